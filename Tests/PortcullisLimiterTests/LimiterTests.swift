import XCTest
import PortcullisCore
import PortcullisHTTP
import PortcullisConfig
import PortcullisPipeline
import Synchronization
@testable import PortcullisLimiter
import PortcullisRedis

/// Token-bucket rules and the limiter stage, against the memory store with a controlled clock.
final class LimiterTests: XCTestCase {
    final class Clock: Sendable {
        let ms = Atomic<Int64>(1_000_000)
        func advance(_ d: Int64) { ms.add(d, ordering: .relaxed) }
    }

    func bucket(_ key: String = "k", capacity: Int64 = 3, window: Int64 = 60_000, cost: Int64 = 1) -> BucketRequest {
        BucketRequest(key: key, capacity: capacity, windowMillis: window, cost: cost, kind: .requests, scope: "tenant requests_per_minute")
    }

    func testExactlyNThenDeniedWithRetryAfter() {
        let clock = Clock()
        let store = MemoryLimitStore(clock: { clock.ms.load(ordering: .relaxed) })
        for i in 0..<3 {
            guard case .admitted(let s) = store.acquire([bucket()]) else { return XCTFail("request \(i) denied") }
            XCTAssertEqual(s[0].remaining, Int64(2 - i))
        }
        guard case .denied(0, let wait, let s) = store.acquire([bucket()]) else { return XCTFail("4th admitted") }
        XCTAssertEqual(wait, 20_000)                // one request refills every 20 s at 3/min
        XCTAssertEqual(s[0].remaining, 0)
        clock.advance(19_999)
        guard case .denied = store.acquire([bucket()]) else { return XCTFail("admitted early") }
        clock.advance(1)
        guard case .admitted = store.acquire([bucket()]) else { return XCTFail("not refilled") }
    }

    /// A decision's statuses: six inline, more in the array, in order either way; equal as lists.
    func testBucketStatusesKeepOrderPastTheInlineSix() {
        var s = BucketStatuses()
        for i in 0..<9 { s.append(BucketStatus(remaining: Int64(i), resetMillis: Int64(100 + i))) }
        XCTAssertEqual(s.count, 9)
        XCTAssertEqual(s.map(\.remaining), Array(0..<9))
        XCTAssertEqual(s[8].resetMillis, 108)
        var copy = BucketStatuses()
        for x in s { copy.append(x) }
        XCTAssertEqual(s, copy)
        XCTAssertNotEqual(s, [BucketStatus(remaining: 0, resetMillis: 100)])
        XCTAssertEqual([] as BucketStatuses, BucketStatuses())
        // A store's answer for a set of seven buckets reports every one of them.
        let store = MemoryLimitStore(clock: { 0 })
        let many = (0..<7).map { BucketRequest(key: "k\($0)", capacity: 10, windowMillis: 60_000, cost: Int64($0), kind: .tokens, scope: "t") }
        guard case .admitted(let got) = store.acquire(many) else { return XCTFail() }
        XCTAssertEqual(got.map(\.remaining), (0..<7).map { 10 - Int64($0) })
    }

    func testAllOrNothingAcrossBuckets() {
        let store = MemoryLimitStore(clock: { 5_000 })
        let a = bucket("a", capacity: 10), b = bucket("b", capacity: 1)
        guard case .admitted = store.acquire([a, b]) else { return XCTFail() }
        guard case .denied(1, _, _) = store.acquire([a, b]) else { return XCTFail("b should deny") }
        // a was not debited by the denied request: 9 left, not 8.
        guard case .admitted(let s) = store.acquire([a]) else { return XCTFail() }
        XCTAssertEqual(s[0].remaining, 8)
    }

    func testCostAboveCapacityIsDeniedForAWindowAndAdjustSettles() {
        let store = MemoryLimitStore(clock: { 5_000 })
        guard case .denied(0, let wait, _) = store.acquire([bucket(capacity: 100, cost: 101)]) else { return XCTFail() }
        XCTAssertEqual(wait, 60_000)
        guard case .admitted(let s) = store.acquire([bucket(capacity: 100, cost: 60)]) else { return XCTFail() }
        XCTAssertEqual(s[0].remaining, 40)
        store.adjust([bucket(capacity: 100, cost: -50)])          // used less than estimated: refund, capped
        guard case .admitted(let s2) = store.acquire([bucket(capacity: 100, cost: 0)]) else { return XCTFail() }
        XCTAssertEqual(s2[0].remaining, 90)
    }

    func testMixedKnownAndNewBucketsAreAllDebitedAndSettledByDelta() {
        let store = MemoryLimitStore(clock: { 5_000 })
        let a = BucketRequest(key: "a", capacity: 10, windowMillis: 60_000, cost: 1, kind: .requests, scope: "a")
        let b = BucketRequest(key: "b", capacity: 100, windowMillis: 60_000, cost: 30, kind: .tokens, scope: "b")
        _ = store.acquire([a])
        // a is known (written through its index), b is new (inserted after).
        guard case .admitted(let s) = store.acquire([a, b]) else { return XCTFail() }
        XCTAssertEqual(s.map(\.remaining), [8, 70])
        store.adjust([b], by: -20)                                  // 20 fewer tokens used than reserved
        guard case .admitted(let s2) = store.acquire([a, b]) else { return XCTFail() }
        XCTAssertEqual(s2.map(\.remaining), [7, 60])
        XCTAssertEqual(store.count, 2)
    }

    func testSettlementsOfABatchAreSummedPerBucketAndGoFirst() {
        typealias Entry = RedisLimitBackend.Entry
        let settle = { (k: String, c: Int64) in Entry(mode: .settle, requests: [self.bucket(k, cost: c)], done: nil) }
        let admit = Entry(mode: .acquire, requests: [bucket("a"), bucket("b")], done: { _ in })
        let merged = RedisLimitBackend.mergingSettlements([settle("a", 5), admit, settle("a", -2), settle("c", 3), settle("c", -3)])
        XCTAssertEqual(merged.map(\.mode), [.settle, .acquire], "one settlement entry, then the admissions in order")
        XCTAssertEqual(merged[0].requests.map(\.key), ["a"], "a bucket whose deltas cancel is left out")
        XCTAssertEqual(merged[0].requests.map(\.cost), [3])
        XCTAssertEqual(merged[1].requests.map(\.key), ["a", "b"])
        let single = RedisLimitBackend.mergingSettlements([admit, settle("a", 4)])
        XCTAssertEqual(single.map(\.mode), [.acquire, .settle], "a lone settlement is left where it is")
    }

    func testMessagePackIntegersInTheirShortestForm() {
        var w = MessagePackWriter(arrayCount: 12)
        for n: Int64 in [0, 127, 128, 255, 256, 65_535, 65_536, 4_294_967_296, -1, -32, -33, -9_000_000_000] { w.add(n) }
        XCTAssertEqual(w.bytes, [0x9c, 0x00, 0x7f, 0xcc, 0x80, 0xcc, 0xff, 0xcd, 0x01, 0x00, 0xcd, 0xff, 0xff,
                                 0xce, 0x00, 0x01, 0x00, 0x00, 0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
                                 0xff, 0xe0, 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xdf,
                                 0xd3, 0xff, 0xff, 0xff, 0xfd, 0xe7, 0x8e, 0xe6, 0x00])
        XCTAssertEqual(MessagePackWriter(arrayCount: 16).bytes, [0xdc, 0x00, 0x10])
        XCTAssertEqual(MessagePackWriter(arrayCount: 70_000).bytes, [0xdd, 0x00, 0x01, 0x11, 0x70])
    }

    /// The Redis script answers decisions and each key's starting level; remaining and reset
    /// are replayed by the gateway. The replay must give what the memory store gives for the
    /// same sequence from the same levels.
    func testRedisReplyIsReplayedIntoTheMemoryStoresAnswers() throws {
        typealias Entry = RedisLimitBackend.Entry
        let a = BucketRequest(key: "a", capacity: 10, windowMillis: 60_000, cost: 1, kind: .requests, scope: "a")
        let b = BucketRequest(key: "b", capacity: 100, windowMillis: 60_000, cost: 45, kind: .tokens, scope: "b")
        let settleB = BucketRequest(key: "b", capacity: 100, windowMillis: 60_000, cost: -5, kind: .tokens, scope: "b")
        let entries = [Entry(mode: .settle, requests: [settleB], done: nil),
                       Entry(mode: .acquire, requests: [a, b], done: { _ in }),
                       Entry(mode: .acquire, requests: [a, b], done: { _ in }),
                       Entry(mode: .acquire, requests: [a, b], done: { _ in })]
        // Starting levels a = 10, b = 90: the settlement gives 5 back (95), two admissions take
        // 45 each (5 left), the third is refused by b (index 2) with a 24 s wait (40 tokens at
        // 100 per minute).
        let items: [RedisValue] = [.string("002"), .array([.string("10"), .string("90")]), .array([.integer(24_000)]), .array([])]
        let decided = try XCTUnwrap(RedisLimitBackend.decode(items, entries: entries, keys: [a, b], indices: [2, 1, 2, 1, 2, 1, 2])).results

        let store = MemoryLimitStore(clock: { 1_000_000 })
        _ = store.acquire([BucketRequest(key: "b", capacity: 100, windowMillis: 60_000, cost: 10, kind: .tokens, scope: "b")])
        store.adjust([settleB], by: -5)
        let expected = (0..<3).map { _ in store.acquire([a, b]) }
        XCTAssertEqual(decided, expected)
        guard case .denied(let index, let wait, _) = decided[2] else { return XCTFail("\(decided[2])") }
        XCTAssertEqual(index, 1)
        XCTAssertEqual(wait, 24_000)
        XCTAssertNil(RedisLimitBackend.decode([.string("00"), .array([.string("10"), .string("90")]), .array([]), .array([])],
                                              entries: entries, keys: [a, b], indices: [2, 1, 2, 1, 2, 1, 2]),
                     "a reply that does not cover every admission is refused")
    }

    /// A lease entry follows its admission: what it got is taken off the replayed level (so
    /// later admissions of the batch see it) and reported per bucket; a refused admission's lease
    /// must have got nothing.
    func testLeaseGrantsAreReplayedAndReported() throws {
        typealias Entry = RedisLimitBackend.Entry
        let a = BucketRequest(key: "a", capacity: 640, windowMillis: 60_000, cost: 1, kind: .requests, scope: "a")
        let lease = BucketRequest(key: "a", capacity: 640, windowMillis: 60_000, cost: 10, kind: .requests, scope: "a")
        let entries = [Entry(mode: .acquire, requests: [a], done: { _ in }), Entry(mode: .lease, requests: [lease], done: nil),
                       Entry(mode: .acquire, requests: [a], done: { _ in })]
        let items: [RedisValue] = [.string("00"), .array([.string("100")]), .array([]), .array([.integer(10)])]
        let d = try XCTUnwrap(RedisLimitBackend.decode(items, entries: entries, keys: [a], indices: [1, 1, 1]))
        XCTAssertEqual(d.results.count, 2)
        XCTAssertEqual(d.grants.count, 1)
        XCTAssertEqual(d.grants[0].map(\.granted), [10])
        XCTAssertEqual(d.grants[0].map(\.redisLevel), [89])
        guard case .admitted(let second) = d.results[1] else { return XCTFail() }
        XCTAssertEqual(second.map(\.remaining), [88], "the second admission sees the lease taken")
        let refusedWithGrant: [RedisValue] = [.string("10"), .array([.string("0.5")]), .array([.integer(100)]), .array([.integer(3)])]
        XCTAssertNil(RedisLimitBackend.decode(refusedWithGrant, entries: entries, keys: [a], indices: [1, 1, 1]))
    }

    func testLocalLeasesAdmitSettleAndExpire() {
        var leases = LocalLeases(divisor: 64, holdNanos: 1_000)
        let rpm = BucketRequest(key: "r", capacity: 6400, windowMillis: 60_000, cost: 1, kind: .requests, scope: "r")
        let tpm = BucketRequest(key: "t", capacity: 64_000, windowMillis: 60_000, cost: 300, kind: .tokens, scope: "t")
        let small = BucketRequest(key: "s", capacity: 20, windowMillis: 60_000, cost: 1, kind: .requests, scope: "s")
        XCTAssertEqual(leases.want(rpm), 100)
        XCTAssertEqual(leases.want(small), 0, "a bucket smaller than the divisor is never leased")
        XCTAssertNil(leases.take([rpm]), "nothing leased yet")
        leases.add(rpm, granted: 100, redisLevel: 6000, now: 0)
        leases.add(tpm, granted: 1000, redisLevel: 50_000, now: 0)
        guard case .admitted(let s)? = leases.take([rpm, tpm]) else { return XCTFail() }
        XCTAssertEqual(s.map(\.remaining), [6099, 50_700])
        XCTAssertNil(leases.take([rpm, tpm, small]), "every bucket must be covered")
        XCTAssertTrue(leases.adjust([tpm], by: -200), "a refund goes to the lease")
        XCTAssertFalse(leases.adjust([tpm], by: 5000), "a charge above the lease goes to Redis")
        XCTAssertTrue(leases.adjust([tpm], by: 100))
        for _ in 0..<99 { XCTAssertNotNil(leases.take([rpm])) }
        XCTAssertNil(leases.take([rpm]), "the lease is spent: Redis decides")
        let back = leases.expire(now: 2_000)
        XCTAssertEqual(back.map(\.key), ["t"], "only unspent tokens go back")
        XCTAssertEqual(back.map(\.cost), [-800])
        XCTAssertTrue(leases.isEmpty)
    }

    /// A settlement of the last admission's buckets (the usual case: a caller's run of
    /// requests) uses the leases at hand; it must do what the lookup by key does: refuse a
    /// charge above a lease, move token buckets only, and stop using them once leases change.
    func testSettlingTheLastAdmissionsBucketsUsesTheLeasesAtHand() {
        var leases = LocalLeases(divisor: 64, holdNanos: 1_000)
        let rpm = BucketRequest(key: "r", capacity: 6400, windowMillis: 60_000, cost: 1, kind: .requests, scope: "r")
        let tpm = BucketRequest(key: "t", capacity: 64_000, windowMillis: 60_000, cost: 300, kind: .tokens, scope: "t")
        leases.add(rpm, granted: 100, redisLevel: 6000, now: 0)
        leases.add(tpm, granted: 1000, redisLevel: 50_000, now: 0)
        guard case .admitted? = leases.take([rpm, tpm]) else { return XCTFail() }      // tpm lease: 700 left
        XCTAssertFalse(leases.adjust([rpm, tpm], by: 701), "above the lease: Redis settles")
        XCTAssertTrue(leases.adjust([rpm, tpm], by: 700))
        XCTAssertTrue(leases.adjust([rpm, tpm], by: -50))
        XCTAssertEqual(leases.tokens(of: "t"), 50)
        XCTAssertEqual(leases.tokens(of: "r"), 99, "the request bucket is not settled")
        leases.add(BucketRequest(key: "x", capacity: 6400, windowMillis: 60_000, cost: 1, kind: .tokens, scope: "x"),
                   granted: 10, redisLevel: 100, now: 0)                              // leases changed
        XCTAssertTrue(leases.adjust([rpm, tpm], by: 50))
        XCTAssertEqual(leases.tokens(of: "t"), 0)
        XCTAssertFalse(leases.adjust([rpm, tpm], by: 1))
        guard case .admitted(let s)? = leases.take([rpm]) else { return XCTFail() }
        XCTAssertEqual(s.map(\.remaining), [6098])
    }

    /// A burst of admissions before the first grant comes back asks for one lease in all, not
    /// one per request (which moved a whole bucket into one worker's leases: 64 connections ×
    /// 1/64 of the bucket, every other instance refused until they expired).
    func testLeaseTopUpsCountWhatIsAlreadyAsked() {
        var leases = LocalLeases(divisor: 64, holdNanos: 1_000)
        let rpm = BucketRequest(key: "r", capacity: 6400, windowMillis: 60_000, cost: 1, kind: .requests, scope: "r")
        XCTAssertEqual(leases.ask(rpm), 100)
        for _ in 0..<63 { XCTAssertEqual(leases.ask(rpm), 0, "already asked, not yet answered") }
        leases.answered([rpm.withCost(100)])
        leases.add(rpm, granted: 30, redisLevel: 6000, now: 0)           // Redis had less to give
        XCTAssertEqual(leases.ask(rpm), 70, "what the lease lacks")
        leases.answered([rpm.withCost(70)])                               // (failed: nothing granted)
        XCTAssertEqual(leases.ask(rpm), 70)
        XCTAssertEqual(leases.asked["r"], 70)
        leases.answered([rpm.withCost(70)])
        XCTAssertNil(leases.asked["r"])
    }

    /// Cached lookups (a run of one caller's requests) stay right when leases come and go.
    func testLocalLeaseLookupsSurviveLeasesAddedAndRemoved() {
        var leases = LocalLeases(divisor: 64, holdNanos: 1_000)
        let keys = (0..<40).map { "k\($0)" }
        let bucket = { (k: String) in BucketRequest(key: k, capacity: 6400, windowMillis: 60_000, cost: 1, kind: .requests, scope: k) }
        leases.add(bucket("k0"), granted: 50, redisLevel: 100, now: 0)
        for (n, k) in keys.enumerated() {
            guard case .admitted(let s)? = leases.take([bucket("k0")]) else { return XCTFail("k0 after \(n) additions") }
            XCTAssertEqual(s.map(\.remaining), [Int64(149 - n)])
            leases.add(bucket(k + "x"), granted: 5, redisLevel: 10, now: UInt64(n) * 10)   // grows (and rehashes) the table
        }
        for _ in 0..<10 { XCTAssertNotNil(leases.take([bucket("k0")])) }
        XCTAssertNil(leases.take([bucket("k0")]), "k0's 50 tokens are spent")
        let back = leases.expire(now: 1_200)
        XCTAssertEqual(back.count, 21, "leases held 1000 ns go back (k0, spent, just goes)")
        guard case .admitted? = leases.take([bucket("k39x")]) else { return XCTFail("a lease kept after others expired") }
    }

    func testRESPCommandIsWhatRedisExpects() {
        let c = RESPCommand(["SET", "k", "vé"])
        XCTAssertEqual(String(decoding: c.bytes, as: UTF8.self), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nvé\r\n")
        var tail = RESPCommand(arguments: 2)
        tail.add(Int64(1)); tail.add("key")
        let full = tail.prefixed(by: ["EVALSHA", "abc"])
        XCTAssertTrue(full.isComplete)
        XCTAssertEqual(String(decoding: full.bytes, as: UTF8.self), "*4\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n1\r\n$3\r\nkey\r\n")
        var n = RESPCommand(arguments: 3)
        n.add(Int64(-120)); n.add(Int64(0)); n.add(Int64(86_400_000))
        XCTAssertEqual(String(decoding: n.bytes, as: UTF8.self), "*3\r\n$4\r\n-120\r\n$1\r\n0\r\n$8\r\n86400000\r\n")
    }

    func testDecimalBytes() {
        for n: Int64 in [0, 7, 10, 99, 1_000_000, -42, Int64.max, Int64.min] {
            var out: [UInt8] = Array("x=".utf8)
            out.appendDecimal(n)
            XCTAssertEqual(String(decoding: out, as: UTF8.self), "x=\(n)")
        }
    }

    func testResetFormat() {
        XCTAssertEqual(RateLimitReport.duration(20), "20ms")
        XCTAssertEqual(RateLimitReport.duration(1000), "1s")
        XCTAssertEqual(RateLimitReport.duration(360_000), "6m0s")
        XCTAssertEqual(RateLimitReport.duration(3_723_000), "1h2m3s")
        XCTAssertEqual(RateLimitReport.duration(0), "0ms")
        XCTAssertEqual(RateLimitReport.duration(1001), "2s")
        XCTAssertEqual(RateLimitReport.duration(-5), "-5ms")
        XCTAssertEqual(RateLimitReport.duration(Int64.max), "2562047788015h12m56s")
    }

    /// An admitted response's lines (written straight from each kind's pre-rendered start) say
    /// what the 429's header pairs say, in the same order, for each set of reported kinds.
    func testReportLinesMatchTheHeaderPairs() {
        let r = Bucket(key: "r", capacity: 100_000_000, windowMillis: 60_000, kind: .requests, scope: "tenant requests_per_minute")
        let t = Bucket(key: "t", capacity: 7, windowMillis: 86_400_000, kind: .tokens, scope: "tenant tokens_per_day")
        let statuses: BucketStatuses = [BucketStatus(remaining: 99_999_999, resetMillis: 1), BucketStatus(remaining: -3, resetMillis: 3_723_000)]
        let sets = [BucketSet(buckets: [r, t], requestsBucket: 0, tokensBucket: 1),
                    BucketSet(buckets: [r, t], requestsBucket: 0, tokensBucket: nil),
                    BucketSet(buckets: [t, r], requestsBucket: nil, tokensBucket: 0),
                    BucketSet(buckets: [r, t], requestsBucket: nil, tokensBucket: nil)]
        for set in sets {
            let report = RateLimitReport(set: set, statuses: statuses)
            let lines = [UInt8](unsafeUninitializedCapacity: RateLimitReport.linesCapacity) { buf, n in
                n = report.writeLines(to: UnsafeMutableRawBufferPointer(buf))
            }
            let expected = report.headers().map { "\($0.0): \($0.1)\r\n" }.joined()
            XCTAssertEqual(String(decoding: lines, as: UTF8.self), expected)
        }
    }

    /// Every width (each power of ten and the number below it), both signs, the extremes.
    func testByteWriterDecimals() {
        var samples: [Int64] = [0, 7, 10, 99, 100, 12345, -1, -10, Int64.max, Int64.min, Int64.max - 1, Int64.min + 1]
        var p: Int64 = 1
        for _ in 1...18 { p *= 10; samples += [p - 1, p, p + 1, -p, -(p - 1), p / 2 + 7] }
        for n in samples {
            let bytes = [UInt8](unsafeUninitializedCapacity: 24) { buf, count in
                var w = UnsafeByteWriter(buf)
                w.put("n=")
                w.putDecimal(n)
                count = w.count
            }
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self), "n=\(n)")
        }
    }

    // MARK: the stage

    func gateway(_ limits: String) throws -> GatewayConfiguration {
        try ConfigurationLoader.parse("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /x, provider: p } ]\n" + limits, file: "t")
    }

    func context(_ c: GatewayConfiguration, tenant: String?, tier: String? = nil, user: String? = nil,
                 body: String = "{\"max_tokens\":100,\"messages\":[]}") throws -> RequestContext {
        let raw = Array("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: \(body.utf8.count)\r\n\r\n".utf8)
        guard case .complete(let head, _) = raw.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { throw XCTSkip() }
        let ctx = RequestContext(requestID: RequestID("r"), head: head, body: Array(body.utf8), clientAddress: "10.0.0.1", startNanos: 0, configuration: c)
        ctx.tenant = tenant; ctx.tier = tier; ctx.user = user
        _ = RouteMiddleware().process(ctx)
        return ctx
    }

    func testTierLimitsPerTenantUserAndGlobal() throws {
        let c = try gateway("""
        limits:
          default_tier: free
          global: { requests_per_minute: 5 }
          per_user: { requests_per_minute: 2 }
          tiers:
            free: { requests_per_minute: 3 }
            pro: { requests_per_minute: 100 }
        """)
        let m = RateLimitMiddleware(limits: try XCTUnwrap(c.limits), backend: MemoryLimitBackend(MemoryLimitStore()))
        func run(_ t: String?, tier: String? = nil, user: String? = nil) throws -> Int {
            let ctx = try context(c, tenant: t, tier: tier, user: user)
            switch m.process(ctx) {
            case .next: return 200
            case .respond(let r): return r.status
            case .suspend: return -1
            }
        }
        XCTAssertEqual(try (0..<3).map { _ in try run("acme") }, [200, 200, 200])
        XCTAssertEqual(try run("acme"), 429, "free tier: 3 per minute per tenant")
        XCTAssertEqual(try run("globex", tier: "pro", user: "u1"), 200)
        XCTAssertEqual(try run("globex", tier: "pro", user: "u1"), 200)
        XCTAssertEqual(try run("globex", tier: "pro", user: "u1"), 429, "per user: 2 per minute")
        XCTAssertEqual(try run("globex", tier: "pro", user: "u2"), 429, "global: 5 per minute (3 + 2 used)")
    }

    /// A caller's bucket set is kept with the caller (its user entry, or the tenant's) and built
    /// again when the caller's tier changes: each request is checked and reported under the tier
    /// it came with, with and without a user. (A tenant's buckets are keyed by the tenant, not
    /// its tier: the tiers' capacities apply to one bucket.)
    func testCallerBucketSetFollowsTheTier() throws {
        let c = try gateway("""
        limits:
          default_tier: free
          per_user: { requests_per_minute: 1000 }
          tiers:
            free: { requests_per_minute: 100 }
            pro: { requests_per_minute: 500, tokens_per_minute: 10000 }
        """)
        let m = RateLimitMiddleware(limits: try XCTUnwrap(c.limits), backend: MemoryLimitBackend(MemoryLimitStore()))
        func lines(_ tenant: String, _ tier: String?, user: String? = nil) throws -> String {
            let ctx = try context(c, tenant: tenant, tier: tier, user: user)
            guard case .next = m.process(ctx) else { return "refused" }
            return String(decoding: ctx.renderedResponseHeaderLines, as: UTF8.self)
        }
        for user in [nil, "u1", "u2"] as [String?] {
            for _ in 0..<2 {
                let free = try lines("acme", "free", user: user), pro = try lines("acme", "pro", user: user)
                XCTAssertTrue(free.contains("x-ratelimit-limit-requests: 100\r\n") && !free.contains("tokens"), free)
                XCTAssertTrue(pro.contains("x-ratelimit-limit-requests: 500\r\n") && pro.contains("x-ratelimit-limit-tokens: 10000\r\n"), pro)
                XCTAssertTrue(try lines("acme", nil, user: user).contains("x-ratelimit-limit-requests: 100\r\n"), "no tier claim: the default tier's")
            }
        }
        // Verified callers: the limiter keeps what it derived for the last caller object, and
        // only while the context's values are that object's.
        final class Caller { let tier: String; init(_ t: String) { tier = t } }
        let free = Caller("free"), pro = Caller("pro")
        func verified(_ id: Caller, tier changed: String? = nil) throws -> String {
            let ctx = try context(c, tenant: nil)
            ctx.setCaller(id, tenant: "initech", user: "u9", tier: id.tier)
            if let t = changed { ctx.tier = t }
            guard case .next = m.process(ctx) else { return "refused" }
            return String(decoding: ctx.renderedResponseHeaderLines, as: UTF8.self)
        }
        XCTAssertTrue(try verified(free).contains("x-ratelimit-limit-requests: 100\r\n"))
        XCTAssertTrue(try verified(free).contains("x-ratelimit-limit-requests: 100\r\n"))
        XCTAssertTrue(try verified(free, tier: "pro").contains("x-ratelimit-limit-requests: 500\r\n"), "a changed tier is not the object's")
        XCTAssertTrue(try verified(pro).contains("x-ratelimit-limit-tokens: 10000\r\n"))
        XCTAssertTrue(try verified(free).contains("x-ratelimit-limit-requests: 100\r\n"))
        let u3 = try lines("globex", "free", user: "u3")
        XCTAssertTrue(u3.contains("x-ratelimit-remaining-requests: 99\r\n"), "another tenant's user of the same name: its own buckets\n" + u3)
    }

    /// Settlement moves token buckets only: a request's whole bucket list goes to `adjust`, and
    /// its requests-per-minute buckets (tenant and user) keep the one request they were charged,
    /// for a refund (usage below the estimate) and for a charge (above it), on both backends'
    /// paths (the memory store, and Redis's local leases).
    func testSettlementMovesTokenBucketsOnly() throws {
        let c = try gateway("""
        limits:
          default_tier: t
          per_user: { requests_per_minute: 50 }
          tiers:
            t: { requests_per_minute: 10, tokens_per_minute: 10000 }
        """)
        let m = RateLimitMiddleware(limits: try XCTUnwrap(c.limits), backend: MemoryLimitBackend(MemoryLimitStore()))
        func admit() throws -> (RequestContext, String) {
            let ctx = try context(c, tenant: "acme", user: "u")
            guard case .next = m.process(ctx) else { XCTFail(); return (ctx, "") }
            return (ctx, String(decoding: ctx.renderedResponseHeaderLines, as: UTF8.self))
        }
        let (first, _) = try admit()                          // estimate: ~100 tokens (max_tokens) + the prompt
        first.settlement?.settle(usage: 1, streamedEvents: 0, responded: true)
        let (second, lines) = try admit()
        XCTAssertTrue(lines.contains("x-ratelimit-remaining-requests: 8\r\n"), lines)
        XCTAssertTrue(lines.contains("x-ratelimit-remaining-tokens: 98"), lines)   // 10000 - 1 - this estimate
        second.settlement?.settle(usage: 5000, streamedEvents: 0, responded: true)
        let (_, after) = try admit()
        XCTAssertTrue(after.contains("x-ratelimit-remaining-requests: 7\r\n"), after)
        XCTAssertTrue(after.contains("x-ratelimit-remaining-tokens: 48"), after)  // 10000 - 1 - 5000 - this estimate

        var leases = LocalLeases(divisor: 64, holdNanos: 1_000)
        let rpm = BucketRequest(key: "r", capacity: 6400, windowMillis: 60_000, cost: 1, kind: .requests, scope: "r")
        let tpm = BucketRequest(key: "t", capacity: 64_000, windowMillis: 60_000, cost: 300, kind: .tokens, scope: "t")
        XCTAssertFalse(leases.adjust([rpm, tpm], by: -50), "no leases: Redis settles")
        leases.add(tpm, granted: 1000, redisLevel: 50_000, now: 0)
        XCTAssertTrue(leases.adjust([rpm, tpm], by: -200), "the token bucket's lease settles; the unleased rpm bucket is not asked")
        leases.add(rpm, granted: 100, redisLevel: 6000, now: 0)
        guard case .admitted(let s)? = leases.take([rpm, tpm]) else { return XCTFail() }
        XCTAssertEqual(s.map(\.remaining), [6099, 50_900])
        XCTAssertTrue(leases.adjust([rpm, tpm], by: 100))
        guard case .admitted(let s2)? = leases.take([rpm, tpm]) else { return XCTFail() }
        XCTAssertEqual(s2.map(\.remaining), [6098, 50_500], "rpm: one request each; tokens: 300 + 100 + 300")
    }

    /// Identities that differ only as bytes keep separate buckets: canonically equivalent
    /// tenant names (`==` says equal), and a tenant whose name looks like another tenant's user key.
    func testIdentitiesAreKeyedByTheirBytes() throws {
        let c = try gateway("limits: { default_tier: free, per_user: { requests_per_minute: 1 }, tiers: { free: { requests_per_minute: 1 } } }\n")
        let m = RateLimitMiddleware(limits: try XCTUnwrap(c.limits), backend: MemoryLimitBackend(MemoryLimitStore()))
        func run(_ t: String, user: String? = nil) throws -> Int {
            switch m.process(try context(c, tenant: t, user: user)) {
            case .next: return 200
            case .respond(let r): return r.status
            case .suspend: return -1
            }
        }
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        XCTAssertEqual(composed, decomposed, "Swift's == treats them as one string")
        XCTAssertEqual(try run(composed), 200)
        XCTAssertEqual(try run(decomposed), 200, "another tenant: its own bucket")
        XCTAssertEqual(try run(composed), 429)
        XCTAssertEqual(try run("x", user: "y}"), 200)
        XCTAssertEqual(try run("x}:u:y"), 200, "a tenant name cannot forge another tenant's user key")
        XCTAssertEqual("acme".keyEscaped, "acme")
        XCTAssertEqual("org:1{x}%".keyEscaped, "org%3A1%7Bx%7D%25")
        XCTAssertEqual(composed.keyEscaped, "caf%C3%A9")
        XCTAssertEqual(decomposed.keyEscaped, "cafe%CC%81")
    }

    func testDeniedAnswerAndAdmittedHeaders() throws {
        let c = try gateway("limits: { default_tier: free, tiers: { free: { requests_per_minute: 1, tokens_per_day: 1000, max_tokens_cap: 50 } } }\n")
        let m = RateLimitMiddleware(limits: try XCTUnwrap(c.limits), backend: MemoryLimitBackend(MemoryLimitStore()))
        let ok = try context(c, tenant: "acme")
        guard case .next = m.process(ok) else { return XCTFail() }
        let lines = String(decoding: ok.renderedResponseHeaderLines, as: UTF8.self)
        XCTAssertTrue(lines.contains("x-ratelimit-limit-requests: 1\r\nx-ratelimit-remaining-requests: 0\r\n"), lines)
        // Estimate: 32-byte body / 4 + max_tokens 100 clamped to the cap 50 = 58.
        XCTAssertTrue(lines.contains("x-ratelimit-limit-tokens: 1000\r\nx-ratelimit-remaining-tokens: 942\r\n"), lines)
        let denied = try context(c, tenant: "acme")
        guard case .respond(let r) = m.process(denied) else { return XCTFail() }
        XCTAssertEqual(r.status, 429)
        XCTAssertTrue(r.headers.contains { $0.0 == "retry-after" && $0.1 == "60" })
        XCTAssertTrue(r.headers.contains { $0.0 == "x-ratelimit-remaining-requests" && $0.1 == "0" })
        let body = String(decoding: r.body, as: UTF8.self)
        XCTAssertTrue(body.contains("\"code\":\"rate_limit_exceeded\"") && body.contains("requests_per_minute"), body)
        XCTAssertFalse(body.contains("acme"), "never name a tenant in an answer")
        XCTAssertEqual(denied.limitOutcome, "rate_limited:tenant_(free_tier)_requests_per_minute")
        // Without a tenant (no auth) the client address is the tenant.
        let anon = try context(c, tenant: nil)
        guard case .next = m.process(anon) else { return XCTFail() }
    }

    func testConfigErrors() {
        func err(_ y: String) -> String { do { _ = try gateway(y); return "" } catch { return "\(error)" } }
        XCTAssertTrue(err("limits: { default_tier: gold, tiers: { free: { requests_per_minute: 1 } } }\n").contains("no tier 'gold'"))
        XCTAssertTrue(err("limits: { tiers: { free: { requests_per_minute: 0 } } }\n").contains("between 1 and"))
        XCTAssertTrue(err("limits: { tiers: { free: { requests_per_hour: 1 } } }\n").contains("unknown key"))
        XCTAssertTrue(err("limits: { global: { max_concurrent_streams: 1 } }\n").contains("global takes"))
        XCTAssertTrue(err("limits: {}\nredis: { url: 'http://x' }\n").contains("redis://"))
        XCTAssertTrue(err("redis: { url: 'redis://127.0.0.1:6379' }\n").contains("configure limits too"))
        XCTAssertTrue(err("limits: {}\nredis: { url: 'redis://127.0.0.1:6379', lease_divisor: -1 }\n").contains("t:4:56: redis.lease_divisor: must be between 0 and"), "lease_divisor out of range")
        XCTAssertTrue(err("limits: {}\nredis: { url: 'redis://127.0.0.1:6379', lease_hold: 5m }\n").contains("1ms to 60s"))
        XCTAssertTrue(err("limits: {}\nredis: { url: 'redis://127.0.0.1:6379', lease: 64 }\n").contains("unknown key"))
        let leased = try? gateway("limits: {}\nredis: { url: 'redis://127.0.0.1:6379', lease_divisor: 0, lease_hold: 250ms }\n")
        XCTAssertEqual(leased?.redis?.leaseDivisor, 0)
        XCTAssertEqual(leased?.redis?.leaseHold, .milliseconds(250))
        XCTAssertEqual((try? gateway("limits: {}\nredis: { url: 'redis://127.0.0.1:6379' }\n"))?.redis?.leaseDivisor, 64, "the default")
        XCTAssertEqual(RedisConfiguration.parse(url: "redis://:s3cret@10.0.0.5:6380/2").map { "\($0.host) \($0.port) \($0.password ?? "") \($0.database)" },
                       "10.0.0.5 6380 s3cret 2")
    }

    func testBodyEditsClampAndAskForUsage() throws {
        let c = try gateway("limits: { default_tier: free, tiers: { free: { tokens_per_minute: 100000, max_tokens_cap: 64 } } }\n")
        let m = RateLimitMiddleware(limits: try XCTUnwrap(c.limits), backend: MemoryLimitBackend(MemoryLimitStore()))
        let cases: [(String, String)] = [
            ("{\"max_tokens\": 500,\"stream\":true}", "{\"stream_options\":{\"include_usage\":true},\"max_tokens\": 64,\"stream\":true}"),
            ("{\"stream\":true,\"stream_options\":{\"x\":1}}", "{\"stream\":true,\"stream_options\":{\"include_usage\":true,\"x\":1}}"),
            ("{\"stream\":true,\"stream_options\":{}}", "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}"),
            ("{\"stream\":true,\"stream_options\":{\"include_usage\": false}}", "{\"stream\":true,\"stream_options\":{\"include_usage\": true}}"),
            ("{\"stream\":true,\"stream_options\":{\"include_usage\":true}}", "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}"),
            ("{\"stream\":false,\"max_completion_tokens\":10}", "{\"stream\":false,\"max_completion_tokens\":10}"),
        ]
        for (input, expected) in cases {
            let ctx = try context(c, tenant: "t", body: input)
            guard case .next = m.process(ctx) else { return XCTFail(input) }
            XCTAssertEqual(String(decoding: ctx.body, as: UTF8.self), expected, input)
            XCTAssertEqual(ctx.hideStreamUsage, input.contains("\"stream\":true") && !input.contains("\"include_usage\":true"), input)
        }
        let clamped = try context(c, tenant: "t", body: "{\"max_tokens\":500}")
        _ = m.process(clamped)
        XCTAssertTrue(String(decoding: clamped.renderedResponseHeaderLines, as: UTF8.self).contains("x-portcullis-max-tokens-clamped: 64\r\n"))
    }
}
