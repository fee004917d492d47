import PortcullisCore
import PortcullisEventLoop
#if canImport(Glibc)
import Glibc
#endif

/// Idle keep-alive connections of one worker, per provider (nginx `keepalive` in an upstream
/// block). A pooled connection that becomes readable (the provider closed it or sent junk) or
/// outlives its idle timeout is closed and dropped. Loop thread only.
final class UpstreamPool {
    private var idle: [String: [UpstreamConnection]] = [:]
    let loop: EventLoop

    init(loop: EventLoop) { self.loop = loop }

    /// The most recently used idle connection for `key` (LIFO keeps few connections warm).
    func checkout(_ key: String) -> UpstreamConnection? {
        while var list = idle[key], let c = list.popLast() {
            idle[key] = list
            if c.closed { continue }
            if let t = c.idleTimer { loop.cancel(t) }  // lazy: the timer is reused at check-in
            c.pooled = false
            return c
        }
        return nil
    }

    func checkin(_ c: UpstreamConnection, maxIdle: Int, idleTimeoutNanos: UInt64) {
        c.owner = nil
        var list = idle[c.poolKey] ?? []
        list.removeAll { $0.closed }
        guard list.count < maxIdle else { c.close(); return }
        if c.idleTimer == nil {  // first check-in: set up once, reused for the connection's life
            c.onIdleEvent = { [weak self, unowned c] in if c.pooled { self?.evict(c) } }
            c.idleTimer = LoopTimer { [weak self, unowned c] in if c.pooled { self?.evict(c) } }
        }
        c.pooled = true
        if let t = c.idleTimer { loop.arm(t, after: idleTimeoutNanos) }
        list.append(c)
        idle[c.poolKey] = list
    }

    private func evict(_ c: UpstreamConnection) {
        c.close()
        if var list = idle[c.poolKey] {
            list.removeAll { $0 === c }
            idle[c.poolKey] = list
        }
    }

    var idleCount: Int { idle.values.reduce(0) { $0 + $1.count } }

    func closeAll() {
        for (_, list) in idle { for c in list { c.close() } }
        idle.removeAll()
    }
}
