import PortcullisRedis

/// The batch protocol of `RedisLimitScript`, on the gateway's side: what one script call sends
/// (`command(for:)`, after `mergingSettlements`) and how its reply is read (`decode`). Pure
/// functions of a batch: unit-tested without Redis.
extension RedisLimitBackend {
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
            spec.add(e.mode.rawValue); spec.add(e.requests.count)
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
        for e in batch where e.mode == .settle { settles += 1 }
        guard settles > 1 else { return batch }
        var keys = DistinctKeys()
        var deltas: [Int64] = []
        for e in batch where e.mode == .settle {
            for r in e.requests {
                let i = keys.index(of: r) - 1
                if i < deltas.count { deltas[i] += r.cost } else { deltas.append(r.cost) }
            }
        }
        var merged: [BucketRequest] = []
        for (r, d) in zip(keys.first, deltas) where d != 0 {
            merged.append(r.withCost(d))
        }
        var out: [Entry] = []
        out.reserveCapacity(batch.count - settles + 1)
        if !merged.isEmpty { out.append(Entry(mode: .settle, requests: merged, done: nil)) }
        for e in batch where e.mode != .settle { out.append(e) }     // admissions (each with its lease entry) in order
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
            if e.mode == .lease {
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
            if e.mode == .acquire {
                guard let d = decision.next(), d >= 48, Int(d) - 48 <= e.requests.count else { return nil }
                refused = Int(d) - 48
            }
            if refused == 0 {
                for (i, r) in e.requests.enumerated() {
                    let j = indices[at + i] - 1
                    level[j] = min(Double(keys[j].capacity), level[j] - Double(r.cost))
                }
            }
            if e.mode == .acquire {
                var statuses = BucketStatuses()
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
}
