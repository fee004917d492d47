import PortcullisCore
import PortcullisConfig
import PortcullisRedis
import PortcullisEventLoop
import Synchronization

/// The token-bucket script run inside Redis: decides a whole batch of requests — every request
/// a worker admitted or settled during one event-loop iteration — in one call, with Redis's own
/// clock (`TIME`), so every gateway instance shares one set of buckets and one notion of time.
/// Each request is all or nothing over its own buckets; later requests in the batch see the
/// earlier ones' debits. The arithmetic mirrors `TokenBucketMath` (tested against the same
/// sequences as the memory store).
///
/// Cost per call is what matters here (Redis shares the machine's cores with the gateway), so:
/// - KEYS: every distinct bucket of the batch, once; read with one `MGET`, each written back
///   once with `SET … PX` (a bucket is a 16-byte string: level and last-update ms, two
///   little-endian doubles; a key of another type, e.g. an older release's hash, reads as full
///   and is overwritten);
/// - ARGV[1]: the batch as one MessagePack integer array (`cmsgpack.unpack`: one C call):
///   capacity and window ms per key, the number of entries, then per entry its mode
///   (1 = acquire: all or nothing; 0 = settle: add the costs unconditionally; 2 = lease: right
///   after an acquire, and only when it was admitted, take up to `cost` more whole tokens of
///   each bucket, as many as there are) and bucket count, then per bucket its key's index
///   (1-based) and cost;
/// - reply: { one byte per acquire ('0' admitted, else '0' + 1-based index of the refusing
///   bucket), each key's level when the batch began (`%.17g`, exact), the retry-after ms of
///   each refusal in order, the tokens each lease bucket got in order }. Remaining and reset per
///   bucket are not sent: the gateway replays the batch's debits from those levels
///   (`RedisLimitBackend.decode`), the same arithmetic.
public enum RedisLimitScript {
    public static let source = """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local ceil, min, max = math.ceil, math.min, math.max
    local spec = cmsgpack.unpack(ARGV[1])
    local nk = #KEYS
    local stored = {}
    for i = 1, nk, 1000 do                    -- (unpack's results are bounded by Lua's C stack)
      local part = redis.call('MGET', unpack(KEYS, i, min(nk, i + 999)))
      for k = 1, #part do stored[i + k - 1] = part[k] end
    end
    local cap, win, level, start, dirty = {}, {}, {}, {}, {}
    for j = 1, nk do
      local c, w, v = spec[2 * j - 1], spec[2 * j], stored[j]
      cap[j] = c
      win[j] = w
      if v and #v == 16 then
        local tokens, ts = struct.unpack('<dd', v)
        level[j] = min(c, tokens + max(0, now - ts) * (c / w))
      else level[j] = c end
      start[j] = string.format('%.17g', level[j])
    end
    local decided, waits, grants = {}, {}, {}
    local nd, nw, ng = 0, 0, 0
    local a = 2 * nk + 2
    local refused = 0
    for r = 1, spec[2 * nk + 1] do
      local mode, n = spec[a], spec[a + 1]
      a = a + 2
      if mode == 2 then
        for i = 0, n - 1 do
          local j, take = spec[a + 2 * i], 0
          if refused == 0 and level[j] >= 1 then
            take = min(spec[a + 2 * i + 1], math.floor(level[j]))
            level[j] = level[j] - take
            dirty[j] = true
          end
          ng = ng + 1
          grants[ng] = take
        end
      else
        refused = 0
        if mode == 1 then
          for i = 0, n - 1 do
            local j, cost = spec[a + 2 * i], spec[a + 2 * i + 1]
            if level[j] < cost then
              refused = i + 1
              nw = nw + 1
              if cost > cap[j] then waits[nw] = win[j]
              else waits[nw] = max(1, ceil((cost - level[j]) / (cap[j] / win[j]))) end
              break
            end
          end
          nd = nd + 1
          decided[nd] = 48 + refused
        end
        if refused == 0 then
          for i = 0, n - 1 do
            local j = spec[a + 2 * i]
            level[j] = min(cap[j], level[j] - spec[a + 2 * i + 1])
            dirty[j] = true
          end
        end
      end
      a = a + 2 * n
    end
    for j = 1, nk do
      if dirty[j] then redis.call('SET', KEYS[j], struct.pack('<dd', level[j], now), 'PX', win[j] * 2) end
    end
    local out = {}
    for i = 1, nd, 4096 do out[#out + 1] = string.char(unpack(decided, i, min(nd, i + 4095))) end
    return {table.concat(out), start, waits, grants}
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

    /// Tokens taken ahead of need (see `LocalLeases`), and the timer that gives unspent ones back.
    var leases: LocalLeases
    let leaseTimer = LoopTimer({})

    public init(redis: RedisConnection, fallback: MemoryLimitStore, policy: RedisConfiguration.FailurePolicy,
                health: LimiterHealth, leaseDivisor: Int = 0, leaseHold: Duration64 = .seconds(1)) {
        self.redis = redis; self.fallback = fallback; self.policy = policy; self.health = health
        self.leases = LocalLeases(divisor: leaseDivisor, holdNanos: leaseHold.nanoseconds)
        leaseTimer.setCallback { [unowned self] in self.expireLeases() }
    }

    /// Retired (a configuration reload replaced this worker's pipeline, and its last request
    /// ended): unspent leases go back to Redis at once, in one script call sent without waiting
    /// for its answer (nothing here may refer to `self` any more). Loop thread.
    deinit {
        redis.loop.cancel(leaseTimer)
        let back = leases.expire(now: UInt64.max) { key, l in
            BucketRequest(key: key, capacity: l.capacity, windowMillis: l.windowMillis, cost: -l.tokens, kind: .tokens, scope: "lease")
        }
        guard !back.isEmpty else { return }
        let tail = RedisLimitBackend.command(for: [Entry(mode: 0, requests: back, done: nil)]).tail
        let script = bucketScript
        redis.command(tail.prefixed(by: script.sha.map { ["EVALSHA", $0] } ?? ["EVAL", script.source])) { _ in }
    }

    /// Decisions and settlements waiting for the end of this loop iteration.
    struct Entry {
        let mode: Int
        let requests: [BucketRequest]
        let done: ((AdmissionResult) -> Void)?
    }
    var batch: [Entry] = []
    var flushQueued = false

    /// Redis decides; with leasing on, the same call takes this worker's next tokens of each
    /// bucket big enough to lease (a lease entry right after the admission, taken only when it
    /// is admitted).
    public func acquire(_ requests: [BucketRequest], done: @escaping (AdmissionResult) -> Void) {
        if let r = leases.take(requests) { return done(r) }   // (e.g. a stream, after its slot)
        enqueue(Entry(mode: 1, requests: requests, done: done))
        guard leases.divisor > 0 else { return }
        var wanted: [BucketRequest] = []
        for r in requests {
            let w = leases.want(r)
            // A bucket too small to lease: requests like this one are decided in Redis every
            // time, so leasing their other buckets would only hold tokens back.
            guard w > 0 else { return }
            let topUp = w - leases.tokens(of: r.key)
            if topUp > 0 { wanted.append(BucketRequest(key: r.key, capacity: r.capacity, windowMillis: r.windowMillis, cost: topUp, kind: r.kind, scope: r.scope)) }
        }
        if !wanted.isEmpty { enqueue(Entry(mode: 2, requests: wanted, done: nil)) }
    }

    /// Admitted at once when this worker's leases cover every bucket (no round trip).
    public func acquireNow(_ requests: [BucketRequest]) -> AdmissionResult? { leases.take(requests) }

    /// Settlement: adds `delta` to each bucket (negative gives back), in the next batch. Fire
    /// and forget.
    public func adjust(_ buckets: [BucketRequest], by delta: Int64) {
        guard delta != 0, !buckets.isEmpty else { return }
        if leases.adjust(buckets, by: delta) { return }       // leased buckets settle locally
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
        let entries = RedisLimitBackend.mergingSettlements(batch)
        batch.removeAll(keepingCapacity: true)
        guard !entries.isEmpty else { return }
        let (tail, limits, indices) = RedisLimitBackend.command(for: entries)
        run(bucketScript, tail) { [weak self] result in
            guard let self else { return }
            guard case .reply(.array(let items)) = result,
                  let decoded = RedisLimitBackend.decode(items, entries: entries, keys: limits, indices: indices) else {
                let why: String
                switch result {
                case .failed(let w): why = w
                case .reply(let other): why = "\(other)"
                }
                for e in entries {
                    if let done = e.done { self.unavailable(why, e.requests, done) }
                    else if e.mode == 0 { self.fallback.adjust(e.requests) }     // (a lease is simply not taken)
                }
                return
            }
            self.healthy()
            if !decoded.grants.isEmpty { self.addLeases(entries, decoded.grants) }
            for (e, r) in zip(entries.lazy.filter { $0.mode == 1 }, decoded.results) { e.done?(r) }
        }
    }

    /// The script's arguments for `entries`: numkeys, the distinct keys, then the whole batch as
    /// one MessagePack argument; with the distinct buckets (key order) and each bucket's key index.
    static func command(for entries: [Entry]) -> (tail: RESPCommand, keys: [BucketRequest], indices: [Int]) {
        var keys = DistinctKeys()
        var indices: [Int] = []          // each bucket's key index, in batch order
        for e in entries {
            for r in e.requests { indices.append(keys.index(of: r)) }
        }
        var spec = MessagePackWriter(arrayCount: 2 * keys.count + 1 + 2 * entries.count + 2 * indices.count,
                                     capacity: 16 + 12 * keys.count + 4 * entries.count + 8 * indices.count)
        for k in keys.first { spec.add(k.capacity); spec.add(k.windowMillis) }
        spec.add(entries.count)
        var at = 0
        for e in entries {
            spec.add(e.mode); spec.add(e.requests.count)
            for r in e.requests { spec.add(indices[at]); spec.add(r.cost); at += 1 }
        }
        var tail = RESPCommand(arguments: 2 + keys.count, capacity: 48 + 40 * keys.count + spec.bytes.count)
        tail.add(Int64(keys.count))
        for k in keys.first { tail.add(k.key) }
        tail.add(spec.bytes)
        return (tail, keys.first, indices)
    }

    /// The batch with its settlements (fire-and-forget additions) summed per bucket into one
    /// entry, first: requests that finished before this iteration's admissions are settled
    /// before them. Admissions keep their order. Most of a busy batch is one settlement per
    /// finished request on the same few buckets, so this is most of the script's work saved.
    static func mergingSettlements(_ batch: [Entry]) -> [Entry] {
        var settles = 0
        for e in batch where e.mode == 0 { settles += 1 }
        guard settles > 1 else { return batch }
        var keys = DistinctKeys()
        var deltas: [Int64] = []
        for e in batch where e.mode == 0 {
            for r in e.requests {
                let i = keys.index(of: r) - 1
                if i < deltas.count { deltas[i] += r.cost } else { deltas.append(r.cost) }
            }
        }
        var merged: [BucketRequest] = []
        for (r, d) in zip(keys.first, deltas) where d != 0 {
            merged.append(BucketRequest(key: r.key, capacity: r.capacity, windowMillis: r.windowMillis, cost: d, kind: r.kind, scope: r.scope))
        }
        var out: [Entry] = []
        out.reserveCapacity(batch.count - settles + 1)
        if !merged.isEmpty { out.append(Entry(mode: 0, requests: merged, done: nil)) }
        for e in batch where e.mode != 0 { out.append(e) }     // admissions (each with its lease entry) in order
        return out
    }

    /// The distinct bucket keys of a batch, in first-seen order, each with its 1-based index.
    /// Keys come from the middleware's key cache, so equal keys are mostly the same string and
    /// compare by identity: a linear search beats hashing for the few keys of a typical batch;
    /// a dictionary takes over beyond 16.
    struct DistinctKeys {
        var first: [BucketRequest] = []
        var index: [String: Int] = [:]

        var count: Int { first.count }

        /// The 1-based index of `r.key`, added when new.
        mutating func index(of r: BucketRequest) -> Int {
            if first.count <= 16 {
                for (i, k) in first.enumerated() where k.key == r.key { return i + 1 }
                first.append(r)
                if first.count > 16 { for (i, k) in first.enumerated() { index[k.key] = i + 1 } }
                return first.count
            }
            if let i = index[r.key] { return i }
            first.append(r)
            index[r.key] = first.count
            return first.count
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

    /// What the lease entries of a batch got (one list per lease entry, one grant per bucket).
    func addLeases(_ entries: [Entry], _ grants: [[(granted: Int64, redisLevel: Double)]]) {
        let now = MonotonicClock.now()
        var g = grants.makeIterator()
        for e in entries where e.mode == 2 {
            guard let got = g.next() else { break }
            for (r, x) in zip(e.requests, got) { leases.add(r, granted: x.granted, redisLevel: x.redisLevel, now: now) }
        }
        if !leases.isEmpty && !leaseTimer.isArmed { redis.loop.arm(leaseTimer, after: leases.holdNanos) }
    }

    /// Gives back what leases held `lease_hold` did not spend (one settlement in the next batch).
    func expireLeases() {
        let back = leases.expire(now: MonotonicClock.now()) { key, l in
            BucketRequest(key: key, capacity: l.capacity, windowMillis: l.windowMillis, cost: -l.tokens, kind: .tokens, scope: "lease")
        }
        for b in back { enqueue(Entry(mode: 0, requests: [b], done: nil)) }
        if !leases.isEmpty { redis.loop.arm(leaseTimer, after: leases.holdNanos) }
    }

    /// The script's reply — decisions, each key's level when the batch began, waits — turned
    /// into one result per acquire. Remaining and reset per bucket come from replaying the
    /// batch's debits from those levels with `TokenBucketMath`: the script's own arithmetic on
    /// the same doubles, so the same figures it would have sent. `keys`: the batch's distinct
    /// buckets in key order; `indices`: each bucket of each entry's key index (1-based).
    /// One result per acquire, and per lease entry what each of its buckets got (with the
    /// bucket's level in Redis after it).
    struct Decoded {
        var results: [AdmissionResult] = []
        var grants: [[(granted: Int64, redisLevel: Double)]] = []
    }

    static func decode(_ items: [RedisValue], entries: [Entry], keys: [BucketRequest], indices: [Int]) -> Decoded? {
        guard items.count == 4, case .string(let decisions) = items[0], case .array(let starts) = items[1],
              case .array(let waits) = items[2], case .array(let granted) = items[3], starts.count == keys.count else { return nil }
        var level: [Double] = []
        level.reserveCapacity(keys.count)
        for s in starts {
            guard case .string(let text) = s, let v = Double(text) else { return nil }
            level.append(v)
        }
        var out = Decoded()
        out.results.reserveCapacity(entries.count)
        var decision = decisions.utf8.makeIterator()
        var nextWait = 0, nextGrant = 0
        var at = 0                          // into `indices`
        var refused = 0                     // of the last acquire (a lease entry follows its acquire)
        for e in entries {
            if e.mode == 2 {
                var got: [(granted: Int64, redisLevel: Double)] = []
                got.reserveCapacity(e.requests.count)
                for i in 0..<e.requests.count {
                    guard nextGrant < granted.count, case .integer(let take) = granted[nextGrant], take >= 0,
                          take <= e.requests[i].cost, refused == 0 || take == 0 else { return nil }
                    nextGrant += 1
                    let j = indices[at + i] - 1
                    level[j] -= Double(take)
                    got.append((take, level[j]))
                }
                out.grants.append(got)
                at += e.requests.count
                continue
            }
            refused = 0
            if e.mode == 1 {
                guard let d = decision.next(), d >= 48, Int(d) - 48 <= e.requests.count else { return nil }
                refused = Int(d) - 48
            }
            if refused == 0 {
                for (i, r) in e.requests.enumerated() {
                    let j = indices[at + i] - 1
                    level[j] = min(Double(keys[j].capacity), level[j] - Double(r.cost))
                }
            }
            if e.mode == 1 {
                var statuses: [BucketStatus] = []
                statuses.reserveCapacity(e.requests.count)
                for i in 0..<e.requests.count {
                    let k = keys[indices[at + i] - 1]
                    statuses.append(TokenBucketMath.status(level: level[indices[at + i] - 1], capacity: k.capacity, windowMillis: k.windowMillis))
                }
                if refused == 0 {
                    out.results.append(.admitted(statuses))
                } else {
                    guard nextWait < waits.count, case .integer(let wait) = waits[nextWait] else { return nil }
                    nextWait += 1
                    out.results.append(.denied(index: refused - 1, retryAfterMillis: wait, statuses))
                }
            }
            at += e.requests.count
        }
        return decision.next() == nil && nextWait == waits.count && nextGrant == granted.count ? out : nil
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
