import PortcullisCore
import PortcullisPipeline

/// The client side of a proxied response, as the proxy coordinator sees it: implemented by the
/// server connection, which keeps the socket, the output buffer's flushing, timers and the
/// connection's lifecycle. Loop thread only.
public protocol ResponseSink: AnyObject {
    /// The client output buffer; the coordinator appends response bytes to it. The same buffer
    /// for the sink's whole life (the coordinator fetches it once).
    var output: ByteBuffer { get }
    /// Called after bytes were appended: the sink flushes them this iteration. Returns false
    /// when the client is slower than the provider (the coordinator then pauses the upstream
    /// until `ProxyCoordinator.clientDrained()`).
    func outputAppended() -> Bool
    /// Writes what `outputAppended()` queued now instead of at the end of the iteration (a
    /// response in progress, after each provider read). Never called while the coordinator is
    /// paused (the client's slowness has its own path).
    func flushQueued()
    /// Every byte of the response is queued; `keepAlive: false` closes after writing it. A
    /// stream's rest is written at once; a whole answer's with the sink's other completed
    /// answers, in batches within the loop iteration (the client, woken once, finds several).
    func responseQueued(keepAlive: Bool)
    /// Answer with a gateway-made response (only while nothing of a response was queued).
    func respondLocal(_ response: LocalResponse)
    /// The gateway is draining: responses close their connections.
    var isDraining: Bool { get }
}

/// The coordinator's reference to its sink: unretained, and called through a guaranteed
/// reference (`GuaranteedRef`), so a call costs no retain and release. Sound because the sink
/// owns the coordinator: while a coordinator method runs, its connection is alive, and a
/// connection that closes during the call is kept by its loop until the end of the iteration
/// (`EventLoop`'s retired handlers).
typealias SinkRef = GuaranteedRef<any ResponseSink.Type>

extension GuaranteedRef where Callee == any ResponseSink.Type {
    init(sink: ResponseSink) { self.init(sink, type: Swift.type(of: sink)) }
    var isDraining: Bool { type.guaranteedIsDraining(object) }
    func outputAppended() -> Bool { type.guaranteedOutputAppended(object) }
    func flushQueued() { type.guaranteedFlushQueued(object) }
    func responseQueued(keepAlive: Bool) { type.guaranteedResponseQueued(object, keepAlive) }
    func respondLocal(_ r: LocalResponse) { type.guaranteedRespondLocal(object, r) }
}

extension ResponseSink {
    static func guaranteedIsDraining(_ p: UnsafeMutableRawPointer) -> Bool { withGuaranteed(p, as: Self.self) { $0.isDraining } }
    static func guaranteedOutputAppended(_ p: UnsafeMutableRawPointer) -> Bool {
        withGuaranteed(p, as: Self.self) { $0.outputAppended() }
    }
    static func guaranteedFlushQueued(_ p: UnsafeMutableRawPointer) { withGuaranteed(p, as: Self.self) { $0.flushQueued() } }
    static func guaranteedResponseQueued(_ p: UnsafeMutableRawPointer, _ keepAlive: Bool) {
        withGuaranteed(p, as: Self.self) { $0.responseQueued(keepAlive: keepAlive) }
    }
    static func guaranteedRespondLocal(_ p: UnsafeMutableRawPointer, _ r: LocalResponse) {
        withGuaranteed(p, as: Self.self) { $0.respondLocal(r) }
    }
}
