/// An unretained reference to an object, with its dynamic type as a protocol's metatype
/// (`Callee`: `any EventHandler.Type`, `any ResponseSink.Type`…), for calls that cost no retain
/// and release. Calling a method on a protocol-typed reference loaded from storage retains the
/// object for the call and releases it after: two atomic operations, which `perf` found to be
/// ~15 % of the full request path's CPU. Through this, the callee type's static helper rebuilds
/// an `Unmanaged<Self>` and calls through `_withUnsafeGuaranteedRef` instead (`withGuaranteed`).
///
/// Whoever makes one states who keeps the object alive for every call made through it; the
/// loop's handlers and tasks, the pipeline's stages, a coordinator's sink and an exchange's
/// delegate each have an owner that outlives their calls (`Docs/architecture.md`).
public struct GuaranteedRef<Callee> {
    public let object: UnsafeMutableRawPointer
    public let type: Callee
    @inlinable
    public init(_ object: AnyObject, type: Callee) {
        self.object = Unmanaged.passUnretained(object).toOpaque()
        self.type = type
    }
}

/// `body` on the `T` at `object` (an unretained reference), through a guaranteed reference.
@inlinable
public func withGuaranteed<T: AnyObject, R>(_ object: UnsafeMutableRawPointer, as: T.Type, _ body: (T) -> R) -> R {
    Unmanaged<T>.fromOpaque(object)._withUnsafeGuaranteedRef(body)
}

/// `body` on `object` without the retain and release that a call on an object loaded from a
/// stored property otherwise costs (the compiler cannot tell that the call leaves the property
/// alone). Only for an object whose owner provably keeps it alive for the whole call: each use
/// says which owner.
@inlinable @inline(__always)
public func withUnretained<T: AnyObject, R>(_ object: T, _ body: (T) -> R) -> R {
    Unmanaged.passUnretained(object)._withUnsafeGuaranteedRef(body)
}

/// `withUnretained` for an optional reference (`body` gets nil when there is none).
@inlinable @inline(__always)
public func withUnretained<T: AnyObject, R>(_ object: T?, _ body: (T?) -> R) -> R {
    guard let o = object else { return body(nil) }
    return Unmanaged.passUnretained(o)._withUnsafeGuaranteedRef { body($0) }
}
