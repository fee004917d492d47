/// What a middleware decided about a request.
public enum MiddlewareDecision {
    /// Hand the request to the next middleware (or, after the last, to the upstream).
    case next
    /// Answer the client now; nothing further runs and nothing goes upstream.
    case respond(LocalResponse)
    /// The middleware started asynchronous work (a Redis reply) and will call
    /// `PipelineResumer.resume(_:)` exactly once, on the same event loop thread.
    case suspend
}

/// One stage of the request pipeline (Envoy filter / nginx phase handler shape).
///
/// Threads: `process` is called on the loop thread that owns the request; a middleware keeps no
/// per-request state of its own (that goes in `RequestContext`), so one instance serves every
/// request of its worker. To suspend, call `context.suspend()` for a `PipelineResumer`, start the
/// asynchronous work, and return `.suspend`; later call `resume(_:)` on the same loop thread.
public protocol Middleware: AnyObject {
    var name: String { get }
    func process(_ context: RequestContext) -> MiddlewareDecision
}

/// Resumes a suspended pipeline. Calling it twice, or from another thread, is a programmer error.
public final class PipelineResumer {
    fileprivate var onResume: ((MiddlewareDecision) -> Void)?
    init(_ f: @escaping (MiddlewareDecision) -> Void) { onResume = f }

    public func resume(_ decision: MiddlewareDecision) {
        guard let f = onResume else { preconditionFailure("pipeline resumed twice") }
        onResume = nil
        f(decision)
    }

    /// Drops the continuation (the client went away while suspended).
    public func cancel() { onResume = nil }
    public var isPending: Bool { onResume != nil }
}

/// Runs middlewares in order until one answers, all pass, or one suspends. Allocates nothing per
/// stage; a resumer is made only when a middleware actually suspends.
public final class Pipeline {
    public let middlewares: [Middleware]
    public init(_ middlewares: [Middleware]) { self.middlewares = middlewares }

    public enum Outcome {
        case proceed
        case respond(LocalResponse)
    }

    /// Runs from stage `start`. `completion` is called exactly once, possibly later (after a
    /// suspension) but always on the caller's loop thread. Returns the resumer while suspended so
    /// the owner can cancel it if the client disconnects.
    @discardableResult
    public func run(_ ctx: RequestContext, from start: Int = 0,
                    completion: @escaping (Outcome) -> Void) -> PipelineResumer? {
        var i = start
        ctx.running = self
        ctx.completion = completion
        defer { ctx.running = nil; ctx.completion = nil }
        while i < middlewares.count {
            ctx.suspension = nil
            ctx.stage = i
            switch middlewares[i].process(ctx) {
            case .next:
                i += 1
            case .respond(let r):
                completion(.respond(r))
                return nil
            case .suspend:
                precondition(ctx.suspension != nil, "\(middlewares[i].name) returned .suspend without context.suspend()")
                return ctx.suspension
            }
        }
        completion(.proceed)
        return nil
    }
}
