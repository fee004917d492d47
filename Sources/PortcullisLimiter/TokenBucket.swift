/// One token bucket a request touches: `capacity` tokens, refilled evenly over `windowMillis`
/// (so `capacity` per window), `cost` taken by this request (negative: given back).
public struct BucketRequest: Sendable, Equatable {
    public enum Kind: String, Sendable { case requests, tokens }
    public let key: String
    public let capacity: Int64
    public let windowMillis: Int64
    public let cost: Int64
    public let kind: Kind
    /// For answers and logs: "tenant requests_per_minute", "global tokens_per_day", …
    public let scope: String

    public init(key: String, capacity: Int64, windowMillis: Int64, cost: Int64, kind: Kind, scope: String) {
        self.key = key; self.capacity = capacity; self.windowMillis = windowMillis; self.cost = cost
        self.kind = kind; self.scope = scope
    }

    /// The same bucket with another cost (a settlement's delta, a lease's tokens).
    public func withCost(_ c: Int64) -> BucketRequest {
        BucketRequest(key: key, capacity: capacity, windowMillis: windowMillis, cost: c, kind: kind, scope: scope)
    }
}

/// A bucket's state after a decision (for `x-ratelimit-*` headers).
public struct BucketStatus: Sendable, Equatable {
    public let remaining: Int64
    /// Milliseconds until the bucket is full again.
    public let resetMillis: Int64
}

/// What a store decided for one request.
public enum AdmissionResult: Sendable, Equatable {
    /// Every bucket had room; all were debited. One status per bucket, in order.
    case admitted([BucketStatus])
    /// Bucket `index` had no room; nothing was debited.
    case denied(index: Int, retryAfterMillis: Int64, [BucketStatus])
    /// The store could not answer in time (Redis down or slow).
    case unavailable(String)
}

/// The token-bucket arithmetic, shared by the memory store and mirrored by the Redis script
/// (`RedisLimitScript`): one implementation of the rules, tested once.
public enum TokenBucketMath {
    /// The level of a bucket last at `tokens` at `last` ms, at `now` ms (refilled, capped).
    @inline(__always)
    public static func level(tokens: Double, last: Int64, now: Int64, capacity: Int64, windowMillis: Int64) -> Double {
        let rate = Double(capacity) / Double(windowMillis)
        return min(Double(capacity), tokens + Double(max(0, now - last)) * rate)
    }

    /// Milliseconds until `level` reaches `cost` (a cost above the capacity: one whole window).
    public static func waitMillis(level: Double, cost: Int64, capacity: Int64, windowMillis: Int64) -> Int64 {
        if cost > capacity { return windowMillis }
        let rate = Double(capacity) / Double(windowMillis)
        return max(1, Int64(((Double(cost) - level) / rate).rounded(.up)))
    }

    public static func status(level: Double, capacity: Int64, windowMillis: Int64) -> BucketStatus {
        let rate = Double(capacity) / Double(windowMillis)
        return BucketStatus(remaining: max(0, Int64(level.rounded(.down))),
                            resetMillis: max(0, Int64(((Double(capacity) - level) / rate).rounded(.up))))
    }
}

/// A concurrency slot (`max_concurrent_streams`): a lease on one of `max` places, held by
/// `member` until released or until `leaseMillis` pass (so a crashed instance cannot hold a
/// place for ever).
public struct SlotRequest: Sendable, Equatable {
    public let key: String
    public let max: Int
    public let leaseMillis: Int64
    public let member: String
    public let scope: String
}
