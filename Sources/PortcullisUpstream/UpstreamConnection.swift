import CLinux
import PortcullisCore
import PortcullisEventLoop
import PortcullisHTTP
#if canImport(Glibc)
import Glibc
#endif

/// Receives the readiness events of an upstream connection while it serves an exchange.
protocol UpstreamConnectionOwner: AnyObject {
    /// `c`: the connection the event came from (the owner's own), passed so the owner uses it
    /// without loading (and retaining) its stored reference.
    func connectionEvent(_ events: UInt32, on c: UpstreamConnection)
    func connectionTimerFired()
}

/// One TCP (optionally TLS) connection to a provider.
///
/// Ownership: the connection owns its fd and its TLS state and is the only one to close them
/// (`close()`). While it serves a request its `owner` is that request's `UpstreamExchange`; while
/// idle it sits in its worker's `UpstreamPool`. Loop thread only.
final class UpstreamConnection: EventHandler {
    let loop: EventLoop
    /// The provider index this connection belongs to (its pool slot).
    let poolKey: Int
    var transport: Transport
    /// Response bytes read but not yet consumed; empty whenever the connection is idle. Owned by
    /// the connection so a reused connection costs no new buffer.
    let readBuffer = ByteBuffer(capacity: 8192)
    /// The arrays response heads on this connection are parsed into (reused once a head is let go).
    var headStorage = ResponseHeadStorage()
    var fd: Int32 { transport.fd }
    /// The exchange this connection serves. Strong on purpose (a weak reference would cost a
    /// side-table allocation per exchange): every exchange end clears it — `finish` via the pool's
    /// check-in, `fail`/`cancel`/retry via `close()`.
    var owner: UpstreamConnectionOwner?
    var closed = false
    /// The connection's one timer: the owning exchange's timeouts while busy, the pool's idle
    /// timeout while pooled. Released (removed from the loop's heap) in `close()`.
    /// (A `let` set up in `init`: a `lazy var` re-checks and retains on every use.)
    let timer = LoopTimer({})
    var onIdleEvent: (() -> Void)?
    /// True while the connection sits idle in its pool.
    var pooled = false

    init(loop: EventLoop, poolKey: Int, transport: Transport) {
        self.loop = loop
        self.poolKey = poolKey
        self.transport = transport
        timer.setCallback { [unowned self] in
            if let o = self.owner { o.connectionTimerFired() } else if self.pooled { self.onIdleEvent?() }
        }
    }

    func handleEvent(_ events: UInt32) {
        if let o = owner { o.connectionEvent(events, on: self) }
        else if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            // An idle connection has nothing to say: any input, EOF or error means it is unusable.
            // (EPOLLOUT edges are expected after the last write and mean nothing here.)
            onIdleEvent?()
        }
    }

    /// Unregisters and closes. `abort` sends RST (SO_LINGER 0) so the provider stops at once.
    func close(abort: Bool = false) {
        guard !closed else { return }
        closed = true
        loop.release(timer)
        owner = nil
        onIdleEvent = nil
        loop.unregister(fd: fd)
        if abort { Syscall.setLingerZero(fd) }
        transport.free()
        Syscall.close(fd)
    }
}
