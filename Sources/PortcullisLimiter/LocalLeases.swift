import PortcullisCore

/// Tokens one worker took from Redis ahead of need (`redis.lease_divisor`): when an admission
/// goes to Redis, the same script call also takes up to capacity / divisor more whole tokens of
/// each of its buckets, if the bucket has them. Later requests whose every bucket is covered are
/// admitted here, without a round trip; settlements of leased buckets are applied here too.
///
/// Invariants: a lease only ever holds tokens Redis debited for this worker, so every instance
/// together never admits more than the buckets hold (leasing can refuse a little early on
/// another instance, never admit too much). Unspent tokens go back to Redis after `holdNanos`
/// (a lease refreshed by a new grant is kept), and when a reload retires the backend; a process
/// that stops or crashes loses at most its leases, refilled by the buckets within 1/divisor of
/// their window. A worker asks only for what it neither holds nor has already asked for in a
/// call still on its way (`ask`), so a burst of admissions before the first grant arrives asks
/// for one lease, not one per request (which would move a whole bucket into one worker's
/// leases and refuse every other instance until they expire). Buckets smaller than the divisor
/// are never leased: small limits stay exact,
/// decided per request in Redis. `remaining` is this worker's view (Redis's level after its
/// last grant plus its own tokens), shown in `x-ratelimit-remaining-*`.
///
/// Owned by one `RedisLimitBackend`; loop thread only.
struct LocalLeases {
    /// One bucket's lease. A class: the last request's leases are kept at hand and debited in
    /// place (no dictionary access, no copy) while they stay in `byKey`.
    final class Lease {
        var tokens: Int64
        var remaining: Int64
        var grantedAt: UInt64
        /// The bucket it was granted from (its key, capacity and window).
        let bucket: BucketRequest
        init(tokens: Int64, remaining: Int64, grantedAt: UInt64, bucket: BucketRequest) {
            self.tokens = tokens; self.remaining = remaining; self.grantedAt = grantedAt; self.bucket = bucket
        }
    }
    private(set) var byKey: [String: Lease] = [:]
    /// Tokens asked for in lease entries whose reply has not come back, by key.
    private(set) var asked: [String: Int64] = [:]
    let divisor: Int64
    let holdNanos: UInt64
    /// The last request's buckets and their leases: a run of one caller's requests (the same
    /// `Bucket` objects, from the middleware's cache) is served without hashing. Valid while
    /// `structure` (bumped whenever a lease is added or removed) is unchanged: a removed lease
    /// is never debited.
    private var lastBuckets: [Bucket] = []
    private var lastLeases: [Lease] = []
    private var lastStructure = -1
    private var structure = 0

    init(divisor: Int, holdNanos: UInt64) {
        self.divisor = Int64(max(0, divisor)); self.holdNanos = holdNanos
    }

    var isEmpty: Bool { byKey.isEmpty }

    /// The extra tokens to ask for with an admission touching `r`: capacity / divisor (0 when
    /// leasing is off or the bucket is smaller than the divisor).
    func want(_ r: BucketRequest) -> Int64 { divisor > 0 && r.cost >= 0 ? r.capacity / divisor : 0 }

    /// Tokens leased for `key` (0 without a lease).
    func tokens(of key: String) -> Int64 { byKey[key]?.tokens ?? 0 }

    /// The top-up to ask for with an admission touching `r`: what the worker's lease of its
    /// bucket lacks, less what is already asked for and not answered (recorded as asked).
    mutating func ask(_ r: BucketRequest) -> Int64 {
        let topUp = want(r) - tokens(of: r.key) - (asked[r.key] ?? 0)
        guard topUp > 0 else { return 0 }
        asked[r.key, default: 0] += topUp
        return topUp
    }

    /// A lease entry's reply (or its failure) came back: its tokens are no longer asked for.
    mutating func answered(_ entry: [BucketRequest]) {
        for r in entry {
            guard let a = asked[r.key] else { continue }
            asked[r.key] = a > r.cost ? a - r.cost : nil
        }
    }

    /// Admits `requests` from leased tokens when every bucket has enough; nil otherwise (Redis
    /// decides, nothing is taken here).
    mutating func take<L: RandomAccessCollection<BucketRequest>>(_ requests: L) -> AdmissionResult? where L.Index == Int {
        guard !byKey.isEmpty, !requests.isEmpty else { return nil }
        if !(lastStructure == structure && sameBuckets(requests)) {
            var found: [Lease] = []
            found.reserveCapacity(requests.count)
            for r in requests {
                guard let l = byKey[r.key] else { return nil }
                found.append(l)
            }
            lastBuckets = requests.map(\.bucket); lastLeases = found; lastStructure = structure
        }
        for i in requests.indices where lastLeases[i].tokens < requests[i].cost { return nil }
        var statuses = BucketStatuses()
        for i in requests.indices {
            let cost = requests[i].cost
            lastLeases[i].tokens -= cost
            lastLeases[i].remaining -= cost
            statuses.append(TokenBucketMath.status(level: Double(lastLeases[i].remaining), capacity: requests[i].bucket.capacity,
                                                   windowMillis: requests[i].bucket.windowMillis))
        }
        return .admitted(statuses)
    }

    /// A settlement (`delta` added to each token bucket; negative gives back; request buckets
    /// are passed over) applied to leases when every token bucket has one and, for a charge,
    /// enough tokens; false: Redis must take it.
    mutating func adjust<L: RandomAccessCollection<BucketRequest>>(_ buckets: L, by delta: Int64) -> Bool where L.Index == Int {
        guard !byKey.isEmpty, !buckets.isEmpty else { return false }
        if lastStructure == structure && sameBuckets(buckets) {
            // The last admission's buckets (a caller's run of requests): their leases at hand,
            // read and debited in place.
            for i in buckets.indices where buckets[i].bucket.kind == .tokens && lastLeases[i].tokens < delta { return false }
            for i in buckets.indices where buckets[i].bucket.kind == .tokens {
                lastLeases[i].tokens -= delta
                lastLeases[i].remaining -= delta
            }
            return true
        }
        for b in buckets where b.kind == .tokens {
            guard let l = lease(of: b), l.tokens >= delta else { return false }
        }
        for b in buckets where b.kind == .tokens {
            guard let l = lease(of: b) else { continue }
            l.tokens -= delta
            l.remaining -= delta
        }
        return true
    }

    /// Whether `requests` are the last request's buckets, in order (the same objects).
    private func sameBuckets<L: RandomAccessCollection<BucketRequest>>(_ requests: L) -> Bool where L.Index == Int {
        guard lastBuckets.count == requests.count else { return false }
        for i in requests.indices where lastBuckets[i] !== requests[i].bucket { return false }
        return true
    }

    /// `b`'s lease: from the last request's when `b` is one of its buckets (a settlement's
    /// buckets usually are), else by hashing its key.
    private func lease(of b: BucketRequest) -> Lease? {
        if lastStructure == structure {
            for i in lastBuckets.indices where lastBuckets[i] === b.bucket { return lastLeases[i] }
        }
        return byKey[b.key]
    }

    /// Adds what Redis granted for bucket `r` (`redisLevel`: its level in Redis after the grant).
    mutating func add(_ r: BucketRequest, granted: Int64, redisLevel: Double, now: UInt64) {
        guard granted > 0 else { return }
        let level = Int64(max(0, redisLevel).rounded(.down))
        if let l = byKey[r.key] {
            l.tokens += granted
            l.remaining = level + l.tokens
            l.grantedAt = now
        } else {
            byKey[r.key] = Lease(tokens: granted, remaining: level + granted, grantedAt: now, bucket: r)
            structure += 1
        }
    }

    /// Removes the leases held `holdNanos` since their last grant (`now: .max`: all of them);
    /// their unspent tokens, as settlements giving them back (negative costs). Spent-out leases
    /// just go.
    mutating func expire(now: UInt64) -> [BucketRequest] {
        var back: [BucketRequest] = []
        for (k, l) in byKey where now &- l.grantedAt >= holdNanos {
            if l.tokens > 0 { back.append(l.bucket.withCost(-l.tokens)) }
            byKey[k] = nil
            structure += 1
        }
        return back
    }
}
