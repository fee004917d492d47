import PortcullisCore
import PortcullisConfig
import PortcullisRedis
import Synchronization

/// The token-bucket script run inside Redis: decides a whole batch of requests — every request
/// a worker admitted or settled during one event-loop iteration — in one call, with Redis's own
/// clock (`TIME`), so every gateway instance shares one set of buckets and one notion of time.
/// Each request is all or nothing over its own buckets; later requests in the batch see the
/// earlier ones' debits (a key touched twice is read once and written once). The arithmetic
/// mirrors `TokenBucketMath` (tested against the same sequences as the memory store).
///
/// KEYS: every bucket of every request, in order. ARGV: the number of requests, then per
/// request its mode (1 = acquire: all or nothing; 0 = settle: add the costs unconditionally) and
/// bucket count, then capacity, window ms and cost per bucket.
/// Reply, per request: admitted (1/0), 1-based index of the refusing bucket, retry-after ms, then
/// remaining and reset ms per bucket.
public enum RedisLimitScript {
    public static let source = """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local state, wins, dirty = {}, {}, {}
    local out = {}
    local a, k = 2, 1
    for r = 1, tonumber(ARGV[1]) do
      local mode, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
      a = a + 2
      local levels = {}
      local ok, idx, wait = 1, 0, 0
      for i = 0, n - 1 do
        local key = KEYS[k + i]
        local cap, win, cost = tonumber(ARGV[a + i * 3]), tonumber(ARGV[a + i * 3 + 1]), tonumber(ARGV[a + i * 3 + 2])
        local st = state[key]
        if st == nil then
          local v = redis.call('HMGET', key, 't', 'ts')
          local tokens, ts = tonumber(v[1]), tonumber(v[2])
          if tokens == nil or ts == nil then tokens = cap; ts = now end
          st = {tokens, ts}
          state[key] = st
        end
        local level = math.min(cap, st[1] + math.max(0, now - st[2]) * cap / win)
        levels[i] = level
        if mode == 1 and ok == 1 and level < cost then
          ok = 0
          idx = i + 1
          if cost > cap then wait = win else wait = math.max(1, math.ceil((cost - level) * win / cap)) end
        end
      end
      out[#out + 1] = ok
      out[#out + 1] = idx
      out[#out + 1] = wait
      for i = 0, n - 1 do
        local key = KEYS[k + i]
        local cap, win, cost = tonumber(ARGV[a + i * 3]), tonumber(ARGV[a + i * 3 + 1]), tonumber(ARGV[a + i * 3 + 2])
        local level = levels[i]
        if ok == 1 then
          level = math.min(cap, level - cost)
          state[key] = {level, now}
          wins[key] = win
          dirty[key] = true
        end
        out[#out + 1] = math.floor(math.max(0, level))
        out[#out + 1] = math.max(0, math.ceil((cap - level) * win / cap))
      end
      a = a + n * 3
      k = k + n
    end
    for key, _ in pairs(dirty) do
      redis.call('HSET', key, 't', state[key][1], 'ts', now)
      redis.call('PEXPIRE', key, wins[key] * 2)
    end
    return out
    """
}

/// Limits kept in Redis, shared by every instance. One `EVALSHA` per worker per event-loop
/// iteration decides every request admitted and settles every request finished in it (each
/// script — buckets, stream slots — is loaded once per connection; `NOSCRIPT`, e.g. after a
/// Redis restart, falls back to `EVAL`, which loads it again). When Redis cannot answer within `redis.timeout`: `fail_open` decides
/// from this instance's memory buckets, `fail_closed` answers 503; either way Redis is used
/// again as soon as it answers. One per worker; loop thread only.
public final class RedisLimitBackend: LimitBackend {
    let redis: RedisConnection
    let fallback: MemoryLimitStore
    let policy: RedisConfiguration.FailurePolicy
    let bucketScript = LoadedScript(RedisLimitScript.source)
    let slotScript = LoadedScript(RedisLimitBackend.slotSource)
    let health: LimiterHealth

    public init(redis: RedisConnection, fallback: MemoryLimitStore, policy: RedisConfiguration.FailurePolicy,
                health: LimiterHealth) {
        self.redis = redis; self.fallback = fallback; self.policy = policy; self.health = health
    }

    /// Decisions and settlements waiting for the end of this loop iteration.
    struct Entry {
        let mode: Int
        let requests: [BucketRequest]
        let done: ((AdmissionResult) -> Void)?
    }
    var batch: [Entry] = []
    var flushQueued = false

    public func acquire(_ requests: [BucketRequest], done: @escaping (AdmissionResult) -> Void) {
        enqueue(Entry(mode: 1, requests: requests, done: done))
    }

    public func acquireNow(_ requests: [BucketRequest]) -> AdmissionResult? { nil }

    /// Settlement: adds `delta` to each bucket (negative gives back), in the next batch. Fire
    /// and forget.
    public func adjust(_ buckets: [BucketRequest], by delta: Int64) {
        guard delta != 0, !buckets.isEmpty else { return }
        enqueue(Entry(mode: 0, requests: buckets.map {
            BucketRequest(key: $0.key, capacity: $0.capacity, windowMillis: $0.windowMillis, cost: delta, kind: $0.kind, scope: $0.scope)
        }, done: nil))
    }

    private func enqueue(_ e: Entry) {
        batch.append(e)
        guard !flushQueued else { return }
        flushQueued = true
        redis.loop.deferToEndOfIteration { [weak self] in self?.flush() }
    }

    /// One script call for everything this iteration produced.
    func flush() {
        flushQueued = false
        let entries = batch
        batch.removeAll(keepingCapacity: true)
        guard !entries.isEmpty else { return }
        // numkeys, the keys, then the arguments — written straight as RESP.
        let buckets = entries.reduce(0) { $0 + $1.requests.count }
        var tail = RESPCommand(arguments: 1 + buckets + 1 + 2 * entries.count + 3 * buckets, capacity: 64 + 64 * buckets)
        tail.add(Int64(buckets))
        for e in entries { for r in e.requests { tail.add(r.key) } }
        tail.add(Int64(entries.count))
        for e in entries {
            tail.add(Int64(e.mode)); tail.add(Int64(e.requests.count))
            for r in e.requests { tail.add(r.capacity); tail.add(r.windowMillis); tail.add(r.cost) }
        }
        run(bucketScript, tail) { [weak self] result in
            guard let self else { return }
            guard case .reply(.array(let items)) = result,
                  let decided = RedisLimitBackend.decode(items, entries: entries) else {
                let why: String
                switch result {
                case .failed(let w): why = w
                case .reply(let other): why = "\(other)"
                }
                for e in entries {
                    if let done = e.done { self.unavailable(why, e.requests, done) } else { self.fallback.adjust(e.requests) }
                }
                return
            }
            self.healthy()
            for (e, r) in zip(entries, decided) { e.done?(r) }
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
        run(slotScript, RESPCommand(["1", slot.key, String(slot.max), String(slot.leaseMillis), slot.member])) { [weak self] r in
            guard let self else { return }
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
        let command = tail.prefixed(by: script.sha.map { ["EVALSHA", $0] } ?? ["EVAL", script.source])
        redis.command(command) { [weak self] r in
            if case .reply(.error(let e)) = r, e.hasPrefix("NOSCRIPT"), let self {
                script.sha = nil                // Redis restarted or flushed its scripts: EVAL loads it again
                return self.redis.command(tail.prefixed(by: ["EVAL", script.source]), completion: completion)
            }
            completion(r)
        }
    }

    /// The script's flat reply, cut per entry.
    static func decode(_ items: [RedisValue], entries: [Entry]) -> [AdmissionResult]? {
        func int(_ v: RedisValue) -> Int64? { if case .integer(let n) = v { n } else { nil } }
        var at = 0
        var out: [AdmissionResult] = []
        out.reserveCapacity(entries.count)
        for e in entries {
            let count = e.requests.count
            guard items.count >= at + 3 + 2 * count, let ok = int(items[at]), let index = int(items[at + 1]),
                  let wait = int(items[at + 2]) else { return nil }
            var statuses: [BucketStatus] = []
            statuses.reserveCapacity(count)
            for i in 0..<count {
                guard let rem = int(items[at + 3 + 2 * i]), let reset = int(items[at + 4 + 2 * i]) else { return nil }
                statuses.append(BucketStatus(remaining: rem, resetMillis: reset))
            }
            out.append(ok == 1 ? .admitted(statuses) : .denied(index: Int(index) - 1, retryAfterMillis: wait, statuses))
            at += 3 + 2 * count
        }
        return at == items.count ? out : nil
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
