import PortcullisCore
import PortcullisEventLoop
#if canImport(Glibc)
import Glibc
#endif

/// Idle keep-alive connections of one worker, per provider (nginx `keepalive` in an upstream
/// block). A pooled connection that becomes readable (the provider closed it or sent junk) or
/// outlives its idle timeout is closed and dropped. Loop thread only.
final class UpstreamPool {
    /// Idle connections per endpoint slot (see `ProviderConfiguration.poolSlot`).
    private var idle: [[UpstreamConnection]] = []
    let loop: EventLoop

    init(loop: EventLoop) { self.loop = loop }

    deinit { closeAll() }

    /// The most recently used idle connection for `key` (LIFO keeps few connections warm).
    func checkout(_ key: Int) -> UpstreamConnection? {
        guard key < idle.count else { return nil }
        while let c = idle[key].popLast() {
            if c.closed { continue }
            loop.cancel(c.timer)  // O(1); the exchange re-arms it for its own timeouts
            c.pooled = false
            return c
        }
        return nil
    }

    func checkin(_ c: UpstreamConnection, maxIdle: Int, idleTimeoutNanos: UInt64) {
        c.owner = nil
        let key = c.poolKey
        while idle.count <= key { idle.append([]) }
        guard idle[key].count < maxIdle else {
            idle[key].removeAll { $0.closed }
            if idle[key].count >= maxIdle { c.close(); return }
            return checkin(c, maxIdle: maxIdle, idleTimeoutNanos: idleTimeoutNanos)
        }
        if c.onIdleEvent == nil {  // first check-in: set up once for the connection's life
            // `unowned`, not `weak`: a weak reference gives the pool a side table, and every
            // exchange's checkout and check-in retains the pool, each then on the runtime's slow
            // path. Safe: `self` is touched only while `c` is pooled, i.e. held in `idle`, so the
            // pool is alive; `deinit` closes every idle connection (which drops this closure).
            c.onIdleEvent = { [unowned self, unowned c] in if c.pooled { self.evict(c) } }
        }
        c.pooled = true
        loop.arm(c.timer, after: idleTimeoutNanos)
        idle[key].append(c)
    }

    private func evict(_ c: UpstreamConnection) {
        c.close()
        if c.poolKey < idle.count { idle[c.poolKey].removeAll { $0 === c } }
    }

    /// Closes idle connections of endpoints not in `keep` (a reload removed their providers).
    func closeIdle(keeping keep: Set<Int>) {
        for slot in idle.indices where !keep.contains(slot) {
            for c in idle[slot] { c.close() }
            idle[slot].removeAll()
        }
    }

    func closeAll() {
        for list in idle { for c in list { c.close() } }
        idle.removeAll()
    }
}
