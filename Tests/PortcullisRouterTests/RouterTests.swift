import XCTest
import PortcullisCore
import PortcullisConfig
import PortcullisJSON
@testable import PortcullisRouter

/// The sticky weighted split, circuit breakers and body edits: pure, no sockets.
final class RouterTests: XCTestCase {
    func config(_ weights: [Int], extraTarget: Bool = false) throws -> [ModelTarget] {
        var tiers = weights.enumerated().map { "{ target: p/m\($0.offset), weight: \($0.element) }" }
        if extraTarget { tiers.append("{ target: p/m\(weights.count), weight: 10 }") }
        let yaml = """
        providers: { p: { base_url: "http://127.0.0.1:1" } }
        models: { a: { tiers: { t: [\(tiers.joined(separator: ", "))] } } }
        routes: [ { path: /x } ]
        """
        return try XCTUnwrap(ConfigurationLoader.parse(yaml, file: "t").models.aliases["a"]?.tiers["t"])
    }

    func choices(_ targets: [ModelTarget], users: Int = 10_000) -> [Int] {
        (0..<users).map { StickyChooser.order(targets, key: StickyChooser.callerKey(tenant: "acme", user: "user-\($0)", fallback: "")).first! }
    }

    func testSplitFollowsTheWeightsWithinTwoPercent() throws {
        for weights in [[90, 10], [50, 50], [70, 20, 10], [1, 1, 1, 1]] {
            let targets = try config(weights)
            let picks = choices(targets)
            let total = Double(weights.reduce(0, +))
            for (i, w) in weights.enumerated() {
                let share = Double(picks.filter { $0 == i }.count) / Double(picks.count)
                XCTAssertEqual(share, Double(w) / total, accuracy: 0.02, "weights \(weights), target \(i): \(share)")
            }
        }
    }

    func testStickyPerUserAndStableAcrossCalls() throws {
        let targets = try config([90, 10])
        XCTAssertEqual(choices(targets), choices(targets))
        // Different tenants with the same user id are different callers.
        let a = StickyChooser.callerKey(tenant: "t1", user: "u", fallback: "")
        let b = StickyChooser.callerKey(tenant: "t2", user: "u", fallback: "")
        XCTAssertNotEqual(a, b)
    }

    func testAWeightChangeMovesFewUsers() throws {
        let before = choices(try config([90, 10]))
        let after = choices(try config([80, 20]))
        let moved = zip(before, after).filter { $0 != $1 }.count
        // Ideal: 10% move (from target 0 to 1 only). Allow noise.
        XCTAssertLessThan(Double(moved) / 10_000, 0.12)
        XCTAssertTrue(zip(before, after).allSatisfy { !($0 == 1 && $1 == 0) }, "a user moved away from the target that gained weight")
        // Adding a target takes users only onto the new one.
        let added = choices(try config([90, 10], extraTarget: true))
        XCTAssertTrue(zip(before, added).allSatisfy { $0 == $1 || $1 == 2 })
    }

    func testOrderPutsZeroWeightLastAndCoversEveryTarget() throws {
        let targets = try config([5, 0, 5])
        for u in 0..<100 {
            let o = StickyChooser.order(targets, key: "u\(u)")
            XCTAssertEqual(Set(o), [0, 1, 2])
            XCTAssertEqual(o.last, 1)
        }
    }

    // MARK: breakers

    func testBreakerOpensSkipsProbesAndCloses() {
        var d = RoutingDefaults(); d.breakerFailures = 3; d.breakerCooldown = .seconds(10)
        let m = RouterMetrics(targetIDs: ["a", "b"])
        let b = CircuitBreakers(targets: 2, defaults: d, metrics: m)
        let s: UInt64 = 1_000_000_000
        XCTAssertTrue(b.admit(0, now: 0))
        b.recordFailure(0, now: 0); b.recordFailure(0, now: 0)
        XCTAssertTrue(b.admit(0, now: 0), "opened too early")
        b.recordSuccess(0)                                   // success resets the count
        for _ in 0..<3 { b.recordFailure(0, now: s) }
        XCTAssertEqual(b.state(0), CircuitBreakers.State.open(until: 11 * s))
        XCTAssertFalse(b.admit(0, now: 5 * s))
        XCTAssertTrue(b.admit(1, now: 5 * s), "breakers are per target")
        XCTAssertTrue(m.render().contains("portcullis_target_breaker_open{target=\"a\"} 1"))
        XCTAssertTrue(b.admit(0, now: 11 * s), "no probe after the cool-down")
        XCTAssertFalse(b.admit(0, now: 11 * s), "a second concurrent probe")
        b.recordFailure(0, now: 12 * s)                      // failed probe: open again
        XCTAssertEqual(b.state(0), CircuitBreakers.State.open(until: 22 * s))
        XCTAssertTrue(b.admit(0, now: 22 * s))
        b.recordSuccess(0)                                   // successful probe: closed
        XCTAssertEqual(b.state(0), CircuitBreakers.State.closed(failures: 0))
        XCTAssertTrue(m.render().contains("portcullis_target_breaker_open{target=\"a\"} 0"))
    }

    func testRetryAfterOpensForThatLongCapped() {
        var d = RoutingDefaults(); d.maxRetryAfter = .seconds(60)
        let b = CircuitBreakers(targets: 1, defaults: d)
        let s: UInt64 = 1_000_000_000
        b.recordFailure(0, now: 0, retryAfterNanos: 7 * s)
        XCTAssertFalse(b.admit(0, now: 6 * s))
        XCTAssertTrue(b.admit(0, now: 7 * s))
        b.recordFailure(0, now: 0, retryAfterNanos: 3600 * s)
        XCTAssertEqual(b.state(0), CircuitBreakers.State.open(until: 60 * s))
    }

    func testAbandonedProbeIsReleased() {
        let b = CircuitBreakers(targets: 1, defaults: { var d = RoutingDefaults(); d.breakerFailures = 1; return d }())
        b.recordFailure(0, now: 0)
        XCTAssertTrue(b.admit(0, now: UInt64.max / 2))
        b.releaseProbe(0)
        XCTAssertTrue(b.admit(0, now: UInt64.max / 2))
    }

    // MARK: body edits

    func edits(_ json: String, names: [String] = ["model", "max_tokens"]) throws -> (JSONMemberEdits, [Range<Int>?], Int) {
        let bytes = Array(json.utf8)
        let scan = try bytes.withUnsafeBytes { try JSONReader.topLevelMembers(names, in: $0) }
        return (JSONMemberEdits(original: bytes, objectHasMembers: !scan.isEmpty), scan.members, scan.afterBrace)
    }

    func testModelSlotKeepsEveryOtherByte() throws {
        var (e, m, _) = try edits("{ \"temperature\": 1.50, \"model\" : \"chat-default\", \"x\": {\"model\": 1} }")
        e.replace(m[0]!, with: nil)
        XCTAssertEqual(String(decoding: e.render(slot: Array("\"gpt-4o\"".utf8)), as: UTF8.self),
                       "{ \"temperature\": 1.50, \"model\" : \"gpt-4o\", \"x\": {\"model\": 1} }")
    }

    /// The slot-only rewrite (a scratch copy for bodies up to `scratchLimit`, pieces appended
    /// above): the same bytes on both sides of the limit, the slot first, last, emptied, grown.
    func testSlotOnlyRewriteIsTheSameOnBothSidesOfTheScratchLimit() throws {
        for pad in [0, 100, JSONMemberEdits.scratchLimit - 40, JSONMemberEdits.scratchLimit, JSONMemberEdits.scratchLimit + 100] {
            let filler = String(repeating: "x", count: pad)
            for (body, value) in [("{\"model\":\"a\",\"f\":\"\(filler)\"}", "\"gpt-4o-mini\""),
                                  ("{\"f\":\"\(filler)\",\"model\":\"chat-default\"}", "\"m\""),
                                  ("{\"f\":\"\(filler)\",\"model\":\"chat\",\"g\":1}", "")] {
                var (e, m, _) = try edits(body)
                guard let r = m[0] else { return XCTFail("no model in \(body.prefix(40))") }
                e.replace(r, with: nil)
                let want = String(body[..<body.utf8.index(body.startIndex, offsetBy: r.lowerBound)]) + value
                    + String(body[body.utf8.index(body.startIndex, offsetBy: r.upperBound)...])
                XCTAssertEqual(String(decoding: e.render(slot: Array(value.utf8)), as: UTF8.self), want, "pad \(pad)")
            }
        }
    }

    /// `write(slot:to:)` writes what `render(slot:)` returns, where `inPlaceCount` says it can:
    /// a slot-only rewrite up to `scratchLimit`. Any other edit, a slot insertion or a larger
    /// body is left to `render`.
    func testInPlaceWriteIsTheRenderedBody() throws {
        for pad in [0, 100, JSONMemberEdits.scratchLimit - 40, JSONMemberEdits.scratchLimit + 100] {
            let filler = String(repeating: "x", count: pad)
            for body in ["{\"model\":\"a\",\"f\":\"\(filler)\"}", "{\"f\":\"\(filler)\",\"model\":\"chat-default\"}"] {
                var (e, m, _) = try edits(body)
                guard let r = m[0] else { return XCTFail("no model") }
                e.replace(r, with: nil)
                let value = Array("\"gpt-4o-mini\"".utf8)
                let want = e.render(slot: value)
                guard let n = e.inPlaceCount(slot: value) else {
                    XCTAssertGreaterThan(want.count, JSONMemberEdits.scratchLimit, "pad \(pad)")
                    continue
                }
                XCTAssertEqual(n, want.count)
                var out = [UInt8](repeating: 0, count: n)
                out.withUnsafeMutableBytes { e.write(slot: value, to: $0.baseAddress!) }
                XCTAssertEqual(out, want, "pad \(pad)")
            }
        }
        var (clamped, m, _) = try edits("{\"model\":\"a\",\"max_tokens\":900}")
        clamped.replace(m[0]!, with: nil)
        clamped.replace(m[1]!, with: Array("100".utf8))
        XCTAssertNil(clamped.inPlaceCount(slot: Array("\"m\"".utf8)))
        var (inserted, _, after2) = try edits("{\"messages\":[]}")
        inserted.insert("model", at: after2, value: nil)
        XCTAssertNil(inserted.inPlaceCount(slot: Array("\"m\"".utf8)))
    }

    func testInsertionsAndClamp() throws {
        var (e, m, after) = try edits("{\"max_tokens\":5000,\"messages\":[]}")
        e.insert("model", at: after, value: nil)
        e.replace(m[1]!, with: Array("100".utf8))
        XCTAssertEqual(String(decoding: e.render(slot: Array("\"m\"".utf8)), as: UTF8.self), "{\"model\":\"m\",\"max_tokens\":100,\"messages\":[]}")
        var (e2, _, after2) = try edits("{}")
        e2.insert("model", at: after2, value: nil)
        e2.insert("max_tokens", at: after2, value: Array("7".utf8))
        let out = String(decoding: e2.render(slot: Array("\"m\"".utf8)), as: UTF8.self)
        XCTAssertTrue(out == "{\"model\":\"m\",\"max_tokens\":7}" || out == "{\"max_tokens\":7,\"model\":\"m\"}", out)
        XCTAssertNoThrow(try JSONReader.parse(Array(out.utf8)))
    }

    func testRenderedBodiesAreValidJSONForMutatedInputs() throws {
        var rng = SystemRandomNumberGenerator()
        let samples = ["{\"model\":\"a\"}", "{\"messages\":[1],\"model\":\"a\",\"max_tokens\":9}", "{ }", "{\"max_tokens\": 3 ,\"z\":null}"]
        for s in samples {
            for insertModel in [false, true] {
                var (e, m, after) = try edits(s)
                if let r = m[0] { e.replace(r, with: nil) } else if insertModel { e.insert("model", at: after, value: nil) }
                if let r = m[1] { e.replace(r, with: Array(String(Int.random(in: 0...99, using: &rng)).utf8)) }
                else { e.insert("max_tokens", at: after, value: Array("1".utf8)) }
                let out = e.render(slot: Array("\"gpt\"".utf8))
                guard case .object(let o) = try JSONReader.parse(out) else { return XCTFail() }
                XCTAssertNotNil(o["max_tokens"], String(decoding: out, as: UTF8.self))
            }
        }
    }
}
