import PortcullisCore
import PortcullisConfig
import PortcullisRedis
import PortcullisEventLoop
import Synchronization

/// Limits kept in Redis, shared by every instance. Requests whose every bucket is covered by
/// this worker's leases (`LocalLeases`) are decided at once; the rest go to Redis: one `EVALSHA`
/// (`RedisLimitScript`, batch protocol in `RedisLimitBatch.swift`) per worker per event-loop
/// iteration decides every request admitted and settles every request finished in it (each
/// script — buckets, stream slots — is loaded once per connection; `NOSCRIPT`, e.g. after a
/// Redis restart, falls back to `EVAL`, which loads it again). When Redis cannot answer within
/// `redis.timeout`: `fail_open` decides from this instance's memory buckets, `fail_closed`
/// answers 503; either way Redis is used again as soon as it answers. One per worker; loop
/// thread only.
public final class RedisLimitBackend: LimitBackend {
    let redis: RedisConnection
    let fallback: MemoryLimitStore
    let policy: RedisConfiguration.FailurePolicy
    let bucketScript = LoadedScript(RedisLimitScript.source)
    let slotScript = LoadedScript(RedisLimitBackend.slotSource)
    let health: LimiterHealth

    /// Tokens taken ahead of need (see `LocalLeases`), and the timer that gives unspent ones back.
    var leases: LocalLeases
    let leaseTimer = LoopTimer({})

    /// What the closures Redis answers later hold instead of `[weak self]`: a weak reference
    /// would give the backend a side table, and every request's `acquireNow` and settlement
    /// retains the backend, each then on the runtime's slow path. `deinit` clears it (loop
    /// thread, as every closure that reads it), so a late answer finds nil, as with `weak`.
    final class Handle { unowned(unsafe) var backend: RedisLimitBackend? }
    let handle = Handle()

    public init(redis: RedisConnection, fallback: MemoryLimitStore, policy: RedisConfiguration.FailurePolicy,
                health: LimiterHealth, leaseDivisor: Int = 0, leaseHold: Duration64 = .seconds(1)) {
        self.redis = redis; self.fallback = fallback; self.policy = policy; self.health = health
        self.leases = LocalLeases(divisor: leaseDivisor, holdNanos: leaseHold.nanoseconds)
        leaseTimer.setCallback { [unowned self] in self.expireLeases() }
        handle.backend = self
    }

    /// Retired (a configuration reload replaced this worker's pipeline, and its last request
    /// ended): unspent leases go back to Redis at once, in one script call sent without waiting
    /// for its answer (nothing here may refer to `self` any more). Loop thread.
    deinit {
        handle.backend = nil
        redis.loop.cancel(leaseTimer)
        let back = leases.expire(now: .max)
        guard !back.isEmpty else { return }
        let tail = RedisLimitBackend.command(for: [Entry(mode: .settle, requests: back, done: nil)]).tail
        redis.command(bucketScript.call(tail)) { _ in }
    }

    /// Decisions and settlements waiting for the end of this loop iteration.
    struct Entry {
        /// What the script does with the entry (the raw value goes on the wire).
        enum Mode: Int {
            /// Add the costs unconditionally (a settlement, a lease given back).
            case settle = 0
            /// All or nothing over the request's buckets; answered.
            case acquire = 1
            /// Right after an acquire, only when it was admitted: take up to `cost` more whole
            /// tokens of each bucket, as many as there are; answered with what was taken.
            case lease = 2
        }
        let mode: Mode
        let requests: [BucketRequest]
        let done: ((AdmissionResult) -> Void)?
    }
    var batch: [Entry] = []
    var flushQueued = false

    /// Redis decides; with leasing on, the same call takes this worker's next tokens of each
    /// bucket big enough to lease (a lease entry right after the admission, taken only when it
    /// is admitted).
    public func acquire(_ list: BucketList, done: @escaping (AdmissionResult) -> Void) {
        if let r = leases.take(list) { return done(r) }   // (e.g. a stream, after its slot)
        let requests = Array(list)                          // (the batch's entries keep their costs)
        enqueue(Entry(mode: .acquire, requests: requests, done: done))
        guard leases.divisor > 0 else { return }
        // A bucket too small to lease: requests like this one are decided in Redis every time,
        // so leasing their other buckets would only hold tokens back.
        for r in requests where leases.want(r) <= 0 { return }
        var wanted: [BucketRequest] = []
        for r in requests {
            let topUp = leases.ask(r)
            if topUp > 0 { wanted.append(r.withCost(topUp)) }
        }
        if !wanted.isEmpty { enqueue(Entry(mode: .lease, requests: wanted, done: nil)) }
    }

    /// Admitted at once when this worker's leases cover every bucket (no round trip).
    public func acquireNow(_ requests: BucketList) -> AdmissionResult? { leases.take(requests) }

    /// Settlement: adds `delta` to each bucket (negative gives back), in the next batch. Fire
    /// and forget.
    public func adjust(_ buckets: BucketList, by delta: Int64) {
        guard delta != 0, !buckets.isEmpty else { return }
        if leases.adjust(buckets, by: delta) { return }       // leased buckets settle locally
        enqueue(Entry(mode: .settle, requests: buckets.compactMap { $0.kind == .tokens ? $0.withCost(delta) : nil }, done: nil))
    }

    private func enqueue(_ e: Entry) {
        batch.append(e)
        guard !flushQueued else { return }
        flushQueued = true
        redis.loop.deferToEndOfIteration { [handle] in handle.backend?.flush() }
    }

    /// One script call for everything this iteration produced.
    func flush() {
        flushQueued = false
        let entries = RedisLimitBackend.mergingSettlements(batch)
        batch.removeAll(keepingCapacity: true)
        guard !entries.isEmpty else { return }
        let (tail, limits, indices) = RedisLimitBackend.command(for: entries)
        run(bucketScript, tail) { [handle] result in
            guard let self = handle.backend else { return }
            for e in entries where e.mode == .lease { self.leases.answered(e.requests) }
            guard case .reply(.array(let items)) = result,
                  let decoded = RedisLimitBackend.decode(items, entries: entries, keys: limits, indices: indices) else {
                let why: String
                switch result {
                case .failed(let w): why = w
                case .reply(let other): why = "\(other)"
                }
                for e in entries {
                    if let done = e.done { self.unavailable(why, e.requests, done) }
                    else if e.mode == .settle { self.fallback.adjust(e.requests) }     // (a lease is simply not taken)
                }
                return
            }
            self.healthy()
            if !decoded.grants.isEmpty { self.addLeases(entries, decoded.grants) }
            for (e, r) in zip(entries.lazy.filter { $0.mode == .acquire }, decoded.results) { e.done?(r) }
        }
    }

    static let slotSource = """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    local n = redis.call('ZCARD', KEYS[1])
    if n >= tonumber(ARGV[1]) then return 0 end
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
    return 1
    """

    /// A lease in a sorted set scored by expiry: expired leases (a crashed instance's) are
    /// dropped before counting.
    public func acquireSlot(_ slot: SlotRequest, done: @escaping (Bool?) -> Void) {
        run(slotScript, RESPCommand(["1", slot.key, String(slot.max), String(slot.leaseMillis), slot.member])) { [handle] r in
            guard let self = handle.backend else { return }
            switch r {
            case .reply(.integer(let n)):
                self.healthy()
                done(n == 1)
            default:
                self.health.failures.add(1, ordering: .relaxed)
                switch self.policy {
                case .failOpen: done(self.fallback.acquireSlot(slot))
                case .failClosed: done(nil)
                }
            }
        }
    }

    public func releaseSlot(_ slot: SlotRequest) {
        redis.command(["ZREM", slot.key, slot.member]) { _ in }
        fallback.releaseSlot(slot)      // (taken from memory while degraded)
    }

    /// A Lua script sent by its SHA-1 once `SCRIPT LOAD` answered, by its source before that.
    final class LoadedScript {
        let source: String
        var sha: String?
        var loading = false
        init(_ source: String) { self.source = source }

        /// The script called with `tail`: by its SHA-1 when loaded, else by its source.
        func call(_ tail: RESPCommand) -> RESPCommand {
            tail.prefixed(by: sha.map { ["EVALSHA", $0] } ?? ["EVAL", source])
        }
    }

    /// Runs `script` with `tail` (numkeys, keys, arguments): `EVALSHA` once loaded, `EVAL`
    /// before that and after `NOSCRIPT`.
    func run(_ script: LoadedScript, _ tail: RESPCommand, _ completion: @escaping (RedisResult) -> Void) {
        if script.sha == nil && !script.loading && redis.state == .ready {
            script.loading = true
            redis.command(["SCRIPT", "LOAD", script.source]) { r in
                script.loading = false
                if case .reply(.string(let s)) = r { script.sha = s }
            }
        }
        redis.command(script.call(tail)) { [handle] r in
            if case .reply(.error(let e)) = r, e.hasPrefix("NOSCRIPT"), let self = handle.backend {
                script.sha = nil                // Redis restarted or flushed its scripts: EVAL loads it again
                return self.redis.command(tail.prefixed(by: ["EVAL", script.source]), completion: completion)
            }
            completion(r)
        }
    }

    /// What the lease entries of a batch got (one list per lease entry, one grant per bucket).
    func addLeases(_ entries: [Entry], _ grants: [[(granted: Int64, redisLevel: Double)]]) {
        let now = redis.loop.now             // (the clock `expireLeases` compares with)
        var g = grants.makeIterator()
        for e in entries where e.mode == .lease {
            guard let got = g.next() else { break }
            for (r, x) in zip(e.requests, got) { leases.add(r, granted: x.granted, redisLevel: x.redisLevel, now: now) }
        }
        if !leases.isEmpty && !leaseTimer.isArmed { redis.loop.arm(leaseTimer, after: leases.holdNanos) }
    }

    /// Gives back what leases held `lease_hold` did not spend (one settlement in the next batch).
    func expireLeases() {
        let back = leases.expire(now: redis.loop.now)
        if !back.isEmpty { enqueue(Entry(mode: .settle, requests: back, done: nil)) }
        if !leases.isEmpty { redis.loop.arm(leaseTimer, after: leases.holdNanos) }
    }

    func unavailable(_ why: String, _ requests: [BucketRequest], _ done: (AdmissionResult) -> Void) {
        health.failures.add(1, ordering: .relaxed)
        if !health.degraded.exchange(true, ordering: .relaxed) {
            Log.warning("redis unavailable (\(why)): limits \(policy == .failOpen ? "decided from this instance's memory" : "refuse requests (503)") until it answers")
        }
        switch policy {
        case .failOpen: done(fallback.acquire(requests))
        case .failClosed: done(.unavailable("redis: \(why)"))
        }
    }

    func healthy() {
        if health.degraded.exchange(false, ordering: .relaxed) { Log.info("redis answers again: limits are shared again") }
    }
}

/// Redis health as every worker sees it: whether the limiter is degraded (logged once per
/// change, shown on `/readyz` and `/metrics`) and how many decisions Redis could not make.
public final class LimiterHealth: Sendable {
    public let degraded = Atomic<Bool>(false)
    public let failures = Atomic<Int>(0)
    /// Refused requests by scope (global, tenant, user) × kind (requests, tokens, streams).
    let limited: [Counter] = (0..<9).map { _ in Counter() }
    static let scopes = ["global", "tenant", "user"]
    static let kinds = ["requests", "tokens", "streams"]

    final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    public init() {}

    /// Counts a refusal; `scope` as in `BucketRequest.scope` ("tenant (free tier) tokens_per_day").
    public func countLimited(scope: String, kind: String) {
        let s = Self.scopes.firstIndex { scope.hasPrefix($0) } ?? 1
        let k = Self.kinds.firstIndex(of: kind) ?? 0
        limited[s * 3 + k].value.add(1, ordering: .relaxed)
    }

    public func renderLimited() -> String {
        var out = "# HELP portcullis_rate_limited_total Requests refused by a limit, by scope and kind.\n# TYPE portcullis_rate_limited_total counter\n"
        for (si, s) in Self.scopes.enumerated() {
            for (ki, k) in Self.kinds.enumerated() {
                out += "portcullis_rate_limited_total{scope=\"\(s)\",kind=\"\(k)\"} \(limited[si * 3 + ki].value.load(ordering: .relaxed))\n"
            }
        }
        return out
    }
}
