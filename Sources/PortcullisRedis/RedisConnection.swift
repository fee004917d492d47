import CHiredis
import CLinux
import PortcullisCore
import PortcullisEventLoop
#if canImport(Glibc)
import Glibc
#endif

/// A Redis reply, copied out of hiredis's structures.
public indirect enum RedisValue: Sendable, Equatable {
    case integer(Int64)
    case string(String)
    case status(String)
    case error(String)
    case array([RedisValue])
    case null
}

/// What a command got: a reply, or why there is none (timeout, connection lost, Redis
/// considered down). Every command gets exactly one.
public enum RedisResult: Sendable, Equatable {
    case reply(RedisValue)
    case failed(String)
}

/// One hiredis async connection driven by one worker's event loop (no threads, no blocking).
///
/// - **I/O**: hiredis's `ev` hooks are wired to the loop. The fd is registered edge-triggered;
///   replies are read when epoll reports them, and commands queued during one loop iteration
///   are written together at its end (`addWrite` defers one `redisAsyncHandleWrite`), so
///   pipelining across requests comes for free.
/// - **Bounded waits**: every command has a deadline (`timeout`); when the oldest expires, all
///   pending commands fail at once and the connection is dropped (later replies would be
///   misaligned) and rebuilt with backoff.
/// - **Breaker**: after 3 consecutive failures Redis is considered down for a second: commands
///   fail at once instead of each paying the timeout; then one command probes it again.
/// - **Connect**: numeric addresses only reach hiredis (it would resolve names with a blocking
///   call); after connecting, `AUTH` and `SELECT` go first when configured.
///
/// Owned by its worker for the life of the process; loop thread only.
public final class RedisConnection: EventHandler {
    public enum State: String, Sendable { case disconnected, connecting, ready, down }

    /// The worker's loop this connection (and its users) run on.
    public let loop: EventLoop
    let host: String
    let port: UInt16
    let password: String?
    let database: Int
    let timeoutNanos: UInt64
    /// Called on every state change (logging, metrics).
    public var onStateChange: ((State) -> Void)?

    var ac: UnsafeMutablePointer<redisAsyncContext>?
    var fd: Int32 = -1
    public private(set) var state = State.disconnected
    var writeScheduled = false
    var pending: [Pending] = []
    var pendingHead = 0
    let timer: LoopTimer
    var consecutiveFailures = 0
    var downUntil: UInt64 = 0
    var nextConnectAt: UInt64 = 0
    var backoffNanos: UInt64 = 100_000_000
    /// Set by `close()`: no new commands, no reconnect.
    var closing = false

    /// A command waiting for its reply (retained by hiredis's privdata until its callback).
    final class Pending {
        let deadline: UInt64
        var completion: ((RedisResult) -> Void)?
        init(deadline: UInt64, completion: @escaping (RedisResult) -> Void) {
            self.deadline = deadline; self.completion = completion
        }
        func finish(_ r: RedisResult) {
            guard let c = completion else { return }
            completion = nil
            c(r)
        }
    }

    public init(loop: EventLoop, host: String, port: UInt16, password: String?, database: Int, timeout: Duration64) {
        self.loop = loop; self.host = host; self.port = port; self.password = password
        self.database = database; self.timeoutNanos = timeout.nanoseconds
        self.timer = LoopTimer({})
        timer.setCallback { [unowned self] in self.timerFired() }
    }

    /// Sends one command; `completion` runs exactly once on the loop thread (possibly before
    /// this returns, when Redis is known to be down).
    public func command(_ args: [String], completion: @escaping (RedisResult) -> Void) {
        command(RESPCommand(args), completion: completion)
    }

    /// Sends a command already in RESP (the hot path: no per-argument formatting).
    public func command(_ command: RESPCommand, completion: @escaping (RedisResult) -> Void) {
        precondition(command.isComplete, "a RESP command must have as many arguments as its header says")
        if closing { return completion(.failed("redis connection closed by a reload")) }
        let now = MonotonicClock.now()
        if state == .down {
            if now < downUntil { return completion(.failed("redis is down")) }
            setState(.disconnected)
        }
        if ac == nil {
            if now < nextConnectAt { return completion(.failed("redis is reconnecting")) }
            guard connect() else { return completion(.failed("cannot connect to redis")) }
        }
        send(command, deadline: now &+ timeoutNanos, completion: completion)
    }

    private func send(_ args: [String], deadline: UInt64, completion: @escaping (RedisResult) -> Void) {
        send(RESPCommand(args), deadline: deadline, completion: completion)
    }

    private func send(_ command: RESPCommand, deadline: UInt64, completion: @escaping (RedisResult) -> Void) {
        guard let ac else { return completion(.failed("redis is not connected")) }
        let p = Pending(deadline: deadline, completion: completion)
        let privdata = Unmanaged.passRetained(p).toOpaque()
        // hiredis copies the bytes into its output buffer during the call.
        let rc = command.bytes.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { c in
                redisAsyncFormattedCommand(ac, { ctx, reply, privdata in
                    RedisConnection.replyArrived(reply, privdata)
                }, privdata, c.baseAddress, c.count)
            }
        }
        guard rc == REDIS_OK else {
            Unmanaged<Pending>.fromOpaque(privdata).release()
            return completion(.failed("redis command could not be queued"))
        }
        pending.append(p)
        if !timer.isArmed { loop.arm(timer, at: deadline) }
    }

    // MARK: hiredis callbacks (C)

    static func replyArrived(_ reply: UnsafeMutableRawPointer?, _ privdata: UnsafeMutableRawPointer?) {
        guard let privdata else { return }
        let p = Unmanaged<Pending>.fromOpaque(privdata).takeRetainedValue()
        guard let reply else { return p.finish(.failed("redis connection lost")) }
        p.finish(.reply(RedisConnection.value(reply.assumingMemoryBound(to: redisReply.self))))
    }

    static func value(_ r: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let t = r.pointee.type
        func text() -> String {
            guard let s = r.pointee.str else { return "" }
            return String(decoding: UnsafeRawBufferPointer(start: s, count: Int(r.pointee.len)), as: UTF8.self)
        }
        switch t {
        case REDIS_REPLY_INTEGER: return .integer(Int64(r.pointee.integer))
        case REDIS_REPLY_STRING: return .string(text())
        case REDIS_REPLY_STATUS: return .status(text())
        case REDIS_REPLY_ERROR: return .error(text())
        case REDIS_REPLY_ARRAY:
            var out: [RedisValue] = []
            out.reserveCapacity(Int(r.pointee.elements))
            for i in 0..<Int(r.pointee.elements) {
                if let e = r.pointee.element[i] { out.append(RedisConnection.value(e)) } else { out.append(.null) }
            }
            return .array(out)
        default: return .null
        }
    }

    // MARK: connect / disconnect

    private func connect() -> Bool {
        guard let c = redisAsyncConnect(host, Int32(port)) else { return connectFailed("out of memory") }
        if c.pointee.err != 0 {
            let why = c.pointee.errstr.map { String(cString: $0) } ?? "error"
            redisAsyncFree(c)
            return connectFailed(why)
        }
        ac = c
        fd = c.pointee.c.fd
        let me = Unmanaged.passUnretained(self).toOpaque()
        c.pointee.data = me
        c.pointee.ev.data = me
        c.pointee.ev.addRead = { _ in }
        c.pointee.ev.delRead = { _ in }
        c.pointee.ev.addWrite = { data in
            guard let data else { return }
            Unmanaged<RedisConnection>.fromOpaque(data).takeUnretainedValue().scheduleWrite()
        }
        c.pointee.ev.delWrite = { _ in }
        c.pointee.ev.cleanup = { data in
            guard let data else { return }
            Unmanaged<RedisConnection>.fromOpaque(data).takeUnretainedValue().contextCleanup()
        }
        _ = redisAsyncSetConnectCallback(c) { ctx, status in
            guard let ctx, let data = ctx.pointee.data else { return }
            Unmanaged<RedisConnection>.fromOpaque(data).takeUnretainedValue().connected(status == REDIS_OK)
        }
        _ = redisAsyncSetDisconnectCallback(c) { ctx, status in
            guard let ctx, let data = ctx.pointee.data else { return }
            Unmanaged<RedisConnection>.fromOpaque(data).takeUnretainedValue().disconnected()
        }
        do { try loop.register(fd: fd, handler: self) } catch {
            ac = nil
            redisAsyncFree(c)
            return connectFailed("cannot register the socket")
        }
        setState(.connecting)
        let deadline = MonotonicClock.now() &+ timeoutNanos
        if let pw = password { send(["AUTH", pw], deadline: deadline) { r in if case .reply(.error(let e)) = r { Log.error("redis AUTH: \(e)") } } }
        if database != 0 { send(["SELECT", String(database)], deadline: deadline) { r in if case .reply(.error(let e)) = r { Log.error("redis SELECT: \(e)") } } }
        return true
    }

    private func connectFailed(_ why: String) -> Bool {
        Log.debug("redis \(host):\(port): \(why)")
        noteFailure()
        return false
    }

    func connected(_ ok: Bool) {
        if ok {
            setState(.ready)
            backoffNanos = 100_000_000
            return
        }
        // hiredis frees the context right after this (cleanup hook, pending commands answered
        // with no reply) but calls no disconnect callback for a connection that never was.
        ac = nil
        noteFailure()
        if state != .down { setState(.disconnected) }
        nextConnectAt = MonotonicClock.now() &+ backoffNanos
        backoffNanos = min(backoffNanos * 2, 5_000_000_000)
    }

    /// Retires this connection (a reload moved to another Redis): replies already pending
    /// still arrive, then hiredis closes the socket; later commands fail at once.
    public func close() {
        guard !closing else { return }
        closing = true
        if let c = ac { redisAsyncDisconnect(c) }
    }

    func disconnected() {
        ac = nil
        failAll("redis connection lost")
        if state != .down { setState(.disconnected) }
        nextConnectAt = MonotonicClock.now() &+ backoffNanos
        backoffNanos = min(backoffNanos * 2, 5_000_000_000)
    }

    /// hiredis is about to close the fd: take it off the loop first.
    func contextCleanup() {
        if fd >= 0 { loop.unregister(fd: fd) }
        fd = -1
    }

    /// Drops the connection (timeout: the replies still in flight would be misaligned). Never
    /// called from inside a hiredis callback (only from the timer).
    private func drop() {
        guard let c = ac else { return }
        ac = nil
        redisAsyncFree(c)   // answers each pending command with no reply, cleans up, closes the fd
        nextConnectAt = MonotonicClock.now() &+ backoffNanos
        backoffNanos = min(backoffNanos * 2, 5_000_000_000)
    }

    private func failAll(_ why: String) {
        let all = pending[pendingHead...]
        pending.removeAll(keepingCapacity: true)
        pendingHead = 0
        loop.cancel(timer)
        for p in all { p.finish(.failed(why)) }
    }

    private func noteFailure() {
        consecutiveFailures += 1
        if consecutiveFailures >= 3 && state != .down {
            downUntil = MonotonicClock.now() &+ 1_000_000_000
            setState(.down)
        }
    }

    private func setState(_ s: State) {
        guard s != state else { return }
        state = s
        onStateChange?(s)
    }

    // MARK: I/O

    func scheduleWrite() {
        guard !writeScheduled else { return }
        writeScheduled = true
        // Strong, not `[weak self]`: the closure lives one loop iteration at most, and a weak
        // reference would give the connection a side table (every retain of it, each event's
        // among them, then on the runtime's slow path). A closed connection has no `ac`.
        loop.deferToEndOfIteration { [self] in
            self.writeScheduled = false
            if let c = self.ac { redisAsyncHandleWrite(c) }
        }
    }

    public func handleEvent(_ events: UInt32) {
        guard let c = ac else { return }
        if events & EPOLLOUT.rawValue != 0 && (state == .connecting || writeScheduled) {
            redisAsyncHandleWrite(c)
        }
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            // hiredis reads once per call; edge-triggered epoll reports only new data: read on
            // while bytes are waiting.
            var rounds = 0
            while let c = ac, rounds < 64 {
                let before = pending.count - pendingHead
                redisAsyncHandleRead(c)
                rounds += 1
                guard ac != nil, fd >= 0 else { break }
                var byte: UInt8 = 0
                if recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) <= 0 { break }
                _ = before
            }
        }
        collectFinished()
    }

    /// Removes answered commands from the front of the queue and re-arms the timer.
    private func collectFinished() {
        var answered = false
        while pendingHead < pending.count && pending[pendingHead].completion == nil {
            pendingHead += 1
            answered = true
        }
        if answered { consecutiveFailures = 0 }
        if pendingHead == pending.count {
            pending.removeAll(keepingCapacity: true)
            pendingHead = 0
            loop.cancel(timer)
        } else if pendingHead > 64 {
            pending.removeFirst(pendingHead)
            pendingHead = 0
        }
        if pendingHead < pending.count { loop.arm(timer, at: pending[pendingHead].deadline) }
    }

    private func timerFired() {
        collectFinished()
        guard pendingHead < pending.count else { return }
        if MonotonicClock.now() >= pending[pendingHead].deadline {
            Log.debug("redis \(host):\(port): command timed out")
            noteFailure()
            failAll("redis timed out")
            drop()
        } else {
            loop.arm(timer, at: pending[pendingHead].deadline)
        }
    }
}
