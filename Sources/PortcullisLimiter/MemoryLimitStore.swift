import PortcullisCore
import Synchronization

/// Token buckets in this process's memory: the embedded default (no Redis), and the fallback
/// of `redis.on_failure: fail_open`. Shared by every worker of the process (one lock, held for
/// the few arithmetic operations of one decision). Same rules as the Redis script.
public final class MemoryLimitStore: Sendable {
    struct Bucket {
        var tokens: Double; var last: Int64; var window: Int64
        mutating func settle(_ delta: Int64, now: Int64, capacity: Int64) {
            let level = TokenBucketMath.level(tokens: tokens, last: last, now: now, capacity: capacity, windowMillis: window)
            tokens = min(Double(capacity), level - Double(delta)); last = now
        }
    }
    /// A bucket's key with its hash computed once, when the `Bucket` was made (the middleware
    /// keeps its buckets, so a decision hashes one integer per key instead of the key's bytes).
    struct Key: Hashable {
        let key: String
        let hash: Int
        init(_ b: PortcullisLimiter.Bucket) { key = b.key; hash = b.keyHash }
        func hash(into h: inout Hasher) { h.combine(hash) }
        static func == (a: Key, b: Key) -> Bool { a.hash == b.hash && a.key == b.key }
    }
    let buckets = Mutex<[Key: Bucket]>([:])
    let clock: @Sendable () -> Int64
    let operations = Atomic<Int>(0)
    /// Slot key → member → lease expiry (ms).
    let slots = Mutex<[String: [String: Int64]]>([:])

    /// Takes one of `slot.max` places (expired leases do not count); false when all are held.
    public func acquireSlot(_ slot: SlotRequest) -> Bool {
        let now = clock()
        return slots.withLock { map in
            var held = (map[slot.key] ?? [:]).filter { $0.value > now }
            guard held.count < slot.max else { map[slot.key] = held; return false }
            held[slot.member] = now + slot.leaseMillis
            map[slot.key] = held
            return true
        }
    }

    public func releaseSlot(_ slot: SlotRequest) {
        slots.withLock { map in
            map[slot.key]?[slot.member] = nil
            if map[slot.key]?.isEmpty == true { map[slot.key] = nil }
        }
    }

    public init(clock: @escaping @Sendable () -> Int64 = { Int64(WallClock.nowMillis()) }) { self.clock = clock }

    /// Checks every bucket, then debits all or none. (`requests`: a request's `BucketList`, or
    /// an array with any costs.)
    public func acquire<L: RandomAccessCollection<BucketRequest>>(_ requests: L) -> AdmissionResult where L.Index == Int {
        let now = clock()
        let n = requests.count
        let result = buckets.withLock { map -> AdmissionResult in
            // Each key is looked up once: found buckets are written back through their index.
            // The levels and indices live on the stack for the decision (no arrays to allocate).
            withUnsafeTemporaryAllocation(of: Double.self, capacity: n) { levels -> AdmissionResult in
                withUnsafeTemporaryAllocation(of: Dictionary<Key, Bucket>.Index?.self, capacity: n) { found -> AdmissionResult in
                    guard let foundBase = found.baseAddress else { return .admitted([]) }     // (no requests)
                    var denied: (Int, Int64)? = nil
                    for i in 0..<n {
                        let r = requests[i]
                        let at = map.index(forKey: Key(r.bucket))
                        (foundBase + i).initialize(to: at)
                        let b = at.map { map.values[$0] } ?? Bucket(tokens: Double(r.capacity), last: now, window: r.windowMillis)
                        let level = TokenBucketMath.level(tokens: b.tokens, last: b.last, now: now, capacity: r.capacity, windowMillis: r.windowMillis)
                        levels[i] = level
                        if denied == nil && level < Double(r.cost) {
                            denied = (i, TokenBucketMath.waitMillis(level: level, cost: r.cost, capacity: r.capacity, windowMillis: r.windowMillis))
                        }
                    }
                    defer { foundBase.deinitialize(count: n) }
                    var statuses = BucketStatuses()
                    if let (i, wait) = denied {
                        for k in 0..<n {
                            let r = requests[k]
                            statuses.append(TokenBucketMath.status(level: levels[k], capacity: r.capacity, windowMillis: r.windowMillis))
                        }
                        return .denied(index: i, retryAfterMillis: wait, statuses)
                    }
                    for i in 0..<n {
                        let r = requests[i]
                        let after = levels[i] - Double(r.cost)
                        // (An index stays valid until an insertion: the found ones are written first.)
                        if let at = found[i] { map.values[at] = Bucket(tokens: after, last: now, window: r.windowMillis) }
                        statuses.append(TokenBucketMath.status(level: after, capacity: r.capacity, windowMillis: r.windowMillis))
                    }
                    for i in 0..<n where found[i] == nil {
                        let r = requests[i]
                        map[Key(r.bucket)] = Bucket(tokens: levels[i] - Double(r.cost), last: now, window: r.windowMillis)
                    }
                    return .admitted(statuses)
                }
            }
        }
        pruneSometimes(now)
        return result
    }

    /// Adds `delta` (negative: gives back) to each bucket of `requests` without a check. With
    /// `tokensOnly` (a request's settlement: usage against its estimate) request buckets are
    /// passed over; without it (the Redis backend's fallback replaying settle entries, which may
    /// give back an expired lease of either kind) every bucket moves. A bucket may go below zero
    /// (usage above the estimate is still charged: later requests wait for it).
    public func adjust<L: Sequence<BucketRequest>>(_ requests: L, by delta: Int64, tokensOnly: Bool = false) {
        guard delta != 0 else { return }
        let now = clock()
        buckets.withLock { map in
            for r in requests where !tokensOnly || r.kind == .tokens {
                // One lookup for a bucket held (written through its index); `map[k, default:]`
                // would box its default and a closure on the heap, two allocations a settlement.
                let k = Key(r.bucket)
                if let at = map.index(forKey: k) {
                    map.values[at].settle(delta, now: now, capacity: r.capacity)
                } else {
                    var full = Bucket(tokens: Double(r.capacity), last: now, window: r.windowMillis)
                    full.settle(delta, now: now, capacity: r.capacity)
                    map[k] = full
                }
            }
        }
    }

    /// Adds each request's own `cost` (the Redis backend's fallback settles batches this way).
    public func adjust(_ requests: [BucketRequest]) {
        for r in requests { adjust(CollectionOfOne(r), by: r.cost) }
    }

    /// Every 4096 decisions, forgets buckets that have been idle for two windows (they would be
    /// full again, which is what a missing bucket means).
    func pruneSometimes(_ now: Int64) {
        guard operations.add(1, ordering: .relaxed).newValue & 4095 == 0 else { return }
        buckets.withLock { map in map = map.filter { now - $0.value.last < 2 * $0.value.window } }
    }

    /// Buckets held now (tests, metrics).
    public var count: Int { buckets.withLock { $0.count } }
}
