import PortcullisCore
import PortcullisConfig
import PortcullisRedis
import Synchronization

/// The token-bucket script run inside Redis: checks every bucket of one request and debits all
/// of them or none, in one round trip, with Redis's own clock (`TIME`), so every gateway
/// instance shares one set of buckets and one notion of time. The arithmetic mirrors
/// `TokenBucketMath` (tested against the same sequences as the memory store).
///
/// KEYS: the buckets. ARGV: mode (1 = acquire: all or nothing; 0 = debit unconditionally),
/// then capacity, window ms, cost for each bucket.
/// Reply: admitted (1/0), 1-based index of the refusing bucket, retry-after ms, then remaining
/// and reset ms for each bucket.
public enum RedisLimitScript {
    public static let source = """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local mode = tonumber(ARGV[1])
    local levels = {}
    local out = {1, 0, 0}
    for i = 1, #KEYS do
      local cap = tonumber(ARGV[(i - 1) * 3 + 2])
      local win = tonumber(ARGV[(i - 1) * 3 + 3])
      local cost = tonumber(ARGV[(i - 1) * 3 + 4])
      local v = redis.call('HMGET', KEYS[i], 't', 'ts')
      local tokens, ts = tonumber(v[1]), tonumber(v[2])
      if tokens == nil or ts == nil then tokens = cap; ts = now end
      local level = math.min(cap, tokens + math.max(0, now - ts) * cap / win)
      levels[i] = level
      if mode == 1 and out[1] == 1 and level < cost then
        out[1] = 0
        out[2] = i
        if cost > cap then out[3] = win else out[3] = math.max(1, math.ceil((cost - level) * win / cap)) end
      end
    end
    for i = 1, #KEYS do
      local cap = tonumber(ARGV[(i - 1) * 3 + 2])
      local win = tonumber(ARGV[(i - 1) * 3 + 3])
      local cost = tonumber(ARGV[(i - 1) * 3 + 4])
      local level = levels[i]
      if out[1] == 1 then
        level = math.min(cap, level - cost)
        redis.call('HSET', KEYS[i], 't', tostring(level), 'ts', now)
        redis.call('PEXPIRE', KEYS[i], win * 2)
      end
      out[#out + 1] = math.floor(math.max(0, level))
      out[#out + 1] = math.max(0, math.ceil((cap - level) * win / cap))
    end
    return out
    """
}

/// Limits kept in Redis, shared by every instance. One `EVALSHA` per request (the script is
/// loaded once per connection; `NOSCRIPT`, e.g. after a Redis restart, falls back to `EVAL`,
/// which loads it again). When Redis cannot answer within `redis.timeout`: `fail_open` decides
/// from this instance's memory buckets, `fail_closed` answers 503; either way Redis is used
/// again as soon as it answers. One per worker; loop thread only.
public final class RedisLimitBackend: LimitBackend {
    let redis: RedisConnection
    let fallback: MemoryLimitStore
    let policy: RedisConfiguration.FailurePolicy
    /// The script's SHA-1 once `SCRIPT LOAD` answered (nil: send `EVAL`).
    var sha: String?
    var loading = false
    let health: LimiterHealth

    public init(redis: RedisConnection, fallback: MemoryLimitStore, policy: RedisConfiguration.FailurePolicy,
                health: LimiterHealth) {
        self.redis = redis; self.fallback = fallback; self.policy = policy; self.health = health
    }

    public func acquire(_ requests: [BucketRequest], done: @escaping (AdmissionResult) -> Void) {
        run(mode: 1, requests) { [weak self] result in
            guard let self else { return }
            switch result {
            case .reply(.array(let items)):
                guard let r = RedisLimitBackend.decode(items, count: requests.count) else {
                    return self.unavailable("unexpected reply", requests, done)
                }
                self.healthy()
                done(r)
            case .reply(let other):
                self.unavailable("\(other)", requests, done)
            case .failed(let why):
                self.unavailable(why, requests, done)
            }
        }
    }

    static let slotScript = """
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
        redis.command(["EVAL", Self.slotScript, "1", slot.key, String(slot.max), String(slot.leaseMillis), slot.member]) { [weak self] r in
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
        redis.command(["ZREM", slot.key, slot.member]) { [weak self] r in
            if case .failed = r { self?.fallback.releaseSlot(slot) }   // (taken from memory while degraded)
        }
        fallback.releaseSlot(slot)
    }

    /// Settlement: adds each cost (negative gives back). Fire and forget.
    /// Settlement is a plain `HINCRBYFLOAT` per token bucket (no script, pipelined with the
    /// loop iteration's other commands): the stored level moves by the difference and the next
    /// decision refills and caps it as usual.
    public func adjust(_ requests: [BucketRequest]) {
        for r in requests where r.cost != 0 {
            redis.command(["HINCRBYFLOAT", r.key, "t", String(-r.cost)]) { [weak self] res in
                if case .failed = res { self?.fallback.adjust([r]) }
            }
        }
    }

    func run(mode: Int, _ requests: [BucketRequest], _ completion: @escaping (RedisResult) -> Void) {
        if sha == nil && !loading && redis.state == .ready {
            loading = true
            redis.command(["SCRIPT", "LOAD", RedisLimitScript.source]) { [weak self] r in
                self?.loading = false
                if case .reply(.string(let s)) = r { self?.sha = s }
            }
        }
        var args: [String] = []
        args.reserveCapacity(3 + requests.count * 4 + 1)
        if let s = sha { args += ["EVALSHA", s] } else { args += ["EVAL", RedisLimitScript.source] }
        args.append(String(requests.count))
        for r in requests { args.append(r.key) }
        args.append(String(mode))
        for r in requests { args += [String(r.capacity), String(r.windowMillis), String(r.cost)] }
        redis.command(args) { [weak self] r in
            if case .reply(.error(let e)) = r, e.hasPrefix("NOSCRIPT"), let self {
                self.sha = nil                  // Redis restarted or flushed its scripts: EVAL loads it again
                args[0] = "EVAL"; args[1] = RedisLimitScript.source
                return self.redis.command(args, completion: completion)
            }
            completion(r)
        }
    }

    static func decode(_ items: [RedisValue], count: Int) -> AdmissionResult? {
        func int(_ v: RedisValue) -> Int64? { if case .integer(let n) = v { n } else { nil } }
        guard items.count == 3 + 2 * count, let ok = int(items[0]), let index = int(items[1]), let wait = int(items[2]) else { return nil }
        var statuses: [BucketStatus] = []
        for i in 0..<count {
            guard let rem = int(items[3 + 2 * i]), let reset = int(items[4 + 2 * i]) else { return nil }
            statuses.append(BucketStatus(remaining: rem, resetMillis: reset))
        }
        return ok == 1 ? .admitted(statuses) : .denied(index: Int(index) - 1, retryAfterMillis: wait, statuses)
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
