/// One token bucket: `capacity` tokens, refilled evenly over `windowMillis` (so `capacity` per
/// window), under `key` in the store. Immutable; the limiter builds one per (tenant or user,
/// rates) and shares it by every request that touches the bucket, so a request's bucket is one
/// reference and a cost (no key or scope strings copied per request).
public final class Bucket: Sendable, Equatable {
    public enum Kind: String, Sendable { case requests, tokens }
    public let key: String
    public let capacity: Int64
    public let windowMillis: Int64
    public let kind: Kind
    /// For answers and logs: "tenant requests_per_minute", "global tokens_per_day", …
    public let scope: String
    /// `capacity` in ASCII decimal, written once (every admitted response's
    /// `x-ratelimit-limit-*` copies it).
    let capacityDigits: [UInt8]
    /// `key.hashValue`, computed once (the memory store's lookups hash this integer). The same
    /// for equal keys of every `Bucket` in this process: all workers share one hash seed.
    let keyHash: Int

    public init(key: String, capacity: Int64, windowMillis: Int64, kind: Kind, scope: String) {
        self.key = key; self.capacity = capacity; self.windowMillis = windowMillis; self.kind = kind; self.scope = scope
        var digits: [UInt8] = []
        digits.appendDecimal(capacity)
        capacityDigits = digits
        keyHash = key.hashValue
    }

    public static func == (a: Bucket, b: Bucket) -> Bool {
        a === b || (a.key == b.key && a.capacity == b.capacity && a.windowMillis == b.windowMillis
                    && a.kind == b.kind && a.scope == b.scope)
    }
}

/// A bucket a request touches and the `cost` it takes (negative: gives back).
public struct BucketRequest: Sendable, Equatable {
    public typealias Kind = Bucket.Kind
    public let bucket: Bucket
    public let cost: Int64

    public var key: String { bucket.key }
    public var capacity: Int64 { bucket.capacity }
    public var windowMillis: Int64 { bucket.windowMillis }
    public var kind: Kind { bucket.kind }
    public var scope: String { bucket.scope }

    public init(_ bucket: Bucket, cost: Int64) { self.bucket = bucket; self.cost = cost }

    public init(key: String, capacity: Int64, windowMillis: Int64, cost: Int64, kind: Kind, scope: String) {
        self.init(Bucket(key: key, capacity: capacity, windowMillis: windowMillis, kind: kind, scope: scope), cost: cost)
    }

    /// The same bucket with another cost (a settlement's delta, a lease's tokens).
    public func withCost(_ c: Int64) -> BucketRequest { BucketRequest(bucket, cost: c) }
}

/// The buckets one caller's requests touch, in a fixed order (global, tenant, user), and which of
/// them answers report: built once per caller and set of rates (the limiter's caches hold it), so
/// a request references one object instead of building a list. Immutable.
public final class BucketSet: Sendable {
    public let buckets: [Bucket]
    /// Indices of the buckets reported in the `x-ratelimit-*-requests` and `-tokens` headers.
    public let requestsBucket: Int?
    public let tokensBucket: Int?
    /// Whether any bucket counts tokens (a request then reserves its estimate and is settled).
    public var countsTokens: Bool { tokensBucket != nil }

    /// The constant start of each reported kind's response-head lines, rendered once: its
    /// `x-ratelimit-limit-…` line and the name of the `x-ratelimit-remaining-…` line that follows
    /// (`RateLimitReport.writeLines` copies it, then writes the two values that change).
    let requestsLead: [UInt8]
    let tokensLead: [UInt8]

    public init(buckets: [Bucket], requestsBucket: Int?, tokensBucket: Int?) {
        self.buckets = buckets; self.requestsBucket = requestsBucket; self.tokensBucket = tokensBucket
        func lead(_ i: Int?, _ kind: String) -> [UInt8] {
            guard let i else { return [] }
            return Array("x-ratelimit-limit-\(kind): ".utf8) + buckets[i].capacityDigits
                + Array("\r\nx-ratelimit-remaining-\(kind): ".utf8)
        }
        requestsLead = lead(requestsBucket, "requests")
        tokensLead = lead(tokensBucket, "tokens")
    }
}

/// One request's buckets as the stores read them: a caller's `BucketSet` and the request's
/// token estimate, the cost of each token bucket (a request bucket costs 1). A view: no list
/// is built per request (the stores also take an array of `BucketRequest`s, with any costs).
public struct BucketList: RandomAccessCollection, Sendable {
    public let bucketSet: BucketSet
    public let estimate: Int64

    public init(_ set: BucketSet, estimate: Int64) { self.bucketSet = set; self.estimate = estimate }

    public var startIndex: Int { 0 }
    public var endIndex: Int { bucketSet.buckets.count }
    public subscript(i: Int) -> BucketRequest {
        let b = bucketSet.buckets[i]
        return BucketRequest(b, cost: b.kind == .requests ? 1 : estimate)
    }
}

/// A bucket's state after a decision (for `x-ratelimit-*` headers).
public struct BucketStatus: Sendable, Equatable {
    public let remaining: Int64
    /// Milliseconds until the bucket is full again.
    public let resetMillis: Int64
}

/// A decision's statuses, one per bucket in order. The first six are held inline (a request's
/// buckets — global, tenant, user, by requests and by tokens — are rarely more), any others in
/// an array: an admitted request keeps its statuses (for its `x-ratelimit-*` lines) without an
/// allocation of their own. A value.
public struct BucketStatuses: RandomAccessCollection, Sendable, Equatable, ExpressibleByArrayLiteral,
                              CustomStringConvertible {
    public static let inlineCapacity = 6
    private var inline: (BucketStatus, BucketStatus, BucketStatus, BucketStatus, BucketStatus, BucketStatus)
    private var overflow: [BucketStatus] = []
    public private(set) var count = 0

    public init() {
        let z = BucketStatus(remaining: 0, resetMillis: 0)
        inline = (z, z, z, z, z, z)
    }

    public init(arrayLiteral elements: BucketStatus...) {
        self.init()
        for e in elements { append(e) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(i: Int) -> BucketStatus {
        precondition(i >= 0 && i < count, "bucket status index out of range")
        switch i {
        case 0: return inline.0
        case 1: return inline.1
        case 2: return inline.2
        case 3: return inline.3
        case 4: return inline.4
        case 5: return inline.5
        default: return overflow[i - Self.inlineCapacity]
        }
    }

    public mutating func append(_ s: BucketStatus) {
        switch count {
        case 0: inline.0 = s
        case 1: inline.1 = s
        case 2: inline.2 = s
        case 3: inline.3 = s
        case 4: inline.4 = s
        case 5: inline.5 = s
        default: overflow.append(s)
        }
        count += 1
    }

    public static func == (a: BucketStatuses, b: BucketStatuses) -> Bool { a.elementsEqual(b) }
    public var description: String { Array(self).description }
}

/// What a store decided for one request.
public enum AdmissionResult: Sendable, Equatable {
    /// Every bucket had room; all were debited. One status per bucket, in order.
    case admitted(BucketStatuses)
    /// Bucket `index` had no room; nothing was debited.
    case denied(index: Int, retryAfterMillis: Int64, BucketStatuses)
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
/// place for ever). Immutable; a class so a plan that carries one (or none) copies a reference.
public final class SlotRequest: Sendable, Equatable {
    public let key: String
    public let max: Int
    public let leaseMillis: Int64
    public let member: String
    public let scope: String

    public init(key: String, max: Int, leaseMillis: Int64, member: String, scope: String) {
        self.key = key; self.max = max; self.leaseMillis = leaseMillis; self.member = member; self.scope = scope
    }

    public static func == (a: SlotRequest, b: SlotRequest) -> Bool {
        a === b || (a.key == b.key && a.max == b.max && a.leaseMillis == b.leaseMillis && a.member == b.member && a.scope == b.scope)
    }
}
