import XCTest
@testable import PortcullisProxy

/// Usage counts: the member-by-member reader of a usage object's leading integers gives what
/// the general scan gives, and steps aside (nil) whenever it cannot be sure.
final class UsageTapTests: XCTestCase {
    func counts(_ json: String, leading: Bool) -> UsageTap.Counts? {
        let bytes = Array(json.utf8)
        return bytes.withUnsafeBytes { b in
            leading ? UsageTap.leadingCounts(b, objectAt: 0) : UsageTap.scannedCounts(b, objectAt: 0)
        }
    }

    func testLeadingCountsAgreeWithTheScan() throws {
        let read = [
            // OpenAI (the counts first, then nested details), and with the total last
            #"{"prompt_tokens":16,"completion_tokens":5,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}"#,
            #"{"prompt_tokens":16,"completion_tokens":5,"total_tokens":21}"#,
            #"{"prompt_tokens":123456789012345,"completion_tokens":0,"total_tokens":123456789012345,"x":1}"#,
            #"{ "prompt_tokens" : 16 ,"completion_tokens": 5 , "total_tokens":21 } "#,
            #"{"prompt_tokens":16,"completion_tokens":5}"#,
            #"{"total_tokens":7}"#,
            #"{"completion_tokens":5,"prompt_tokens":16,"total_tokens":99}"#,
            // Anthropic
            #"{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":6}"#,
            #"{"output_tokens":6}"#,
            "{}", "{ }",
            #"{"prompt_tokens":123456789012345,"completion_tokens":1,"total_tokens":2}"#,
            #"{"prompt_tokens_x":1,"prompt_tokens":16,"completion_tokensx":2,"completion_tokens":5,"total_tokens":21}"#,
        ]
        for json in read {
            let fast = counts(json, leading: true)
            XCTAssertNotNil(fast, json)
            XCTAssertEqual(fast, counts(json, leading: false), json)
        }
    }

    func testLeadingCountsStepAsideWhenUnsure() {
        let unsure = [
            #"{"prompt_tokens_details":{"cached_tokens":0},"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}"#,
            #"{"service_tier":"standard","input_tokens":1,"output_tokens":2}"#,
            #"{"prompt_tokens":1.5,"completion_tokens":2,"total_tokens":3}"#,
            #"{"prompt_tokens":1e3,"completion_tokens":2,"total_tokens":3}"#,
            #"{"prompt_tokens":-1,"completion_tokens":2,"total_tokens":3}"#,
            #"{"prompt_tokens":1234567890123456,"completion_tokens":2,"total_tokens":3}"#,
            #"{"prompt_tokens":1,"prompt_tokens":2,"total_tokens":3}"#,
            #"{"prompt\u005ftokens":1,"completion_tokens":2,"total_tokens":3}"#,
            #"{"prompt_tokens":1,"completion_tokens":2"#,
            #"{"prompt_tokens":1 "completion_tokens":2}"#,
            #"["prompt_tokens"]"#,
            // cut inside or right after a usual key (recognised in place, not scanned)
            #"{"prompt_tokens"#, #"{"prompt_tokens""#, #"{"total_tokens":"#, #"{"c"#, #"{"completion_tokens" "#,
        ]
        for json in unsure { XCTAssertNil(counts(json, leading: true), json) }
        // OpenAI's exact layout, cut or bent anywhere: the three-compare reading steps aside too
        for json in [#"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3"#,
                     #"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3.0}"#,
                     #"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":1234567890123456}"#,
                     #"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":-3}"#,
                     #"{"prompt_tokens":1, "completion_tokens":2,"total_tokens":3}"#] {
            XCTAssertNil(Array(json.utf8).withUnsafeBytes { UsageTap.openAILayoutCounts($0, objectAt: 0) }, json)
        }
        // (and the caller's answer is then the scan's)
        let b = Array(unsure[0].utf8)
        XCTAssertEqual(b.withUnsafeBytes { UsageTap.fields($0, objectAt: 0) }, UsageTap.Counts(total: 3, prompt: 1, completion: 2))
    }

    /// The member search finds the first `"name":` the way `memmem` did, at any position: the
    /// name at the very start or end of the bytes, after near misses (`"u`, `"usag`, the name
    /// without a colon, an escaped quote before it), and nothing in a truncated name.
    func testValueStartFindsTheFirstMemberNamedSo() {
        func reference(_ s: String) -> Int? {   // the search as it was: every occurrence, left to right
            let b = Array(s.utf8), name = Array(#""usage""#.utf8)
            var i = 0
            while i + name.count <= b.count {
                if Array(b[i..<(i + name.count)]) == name {
                    var j = i + name.count
                    while j < b.count && [0x20, 0x09, 0x0A, 0x0D].contains(b[j]) { j += 1 }
                    if j < b.count && b[j] == 0x3A {
                        j += 1
                        while j < b.count && [0x20, 0x09, 0x0A, 0x0D].contains(b[j]) { j += 1 }
                        return j < b.count ? j : nil
                    }
                }
                i += 1
            }
            return nil
        }
        let cases = [
            #""usage":{}"#, #"{"usage":1}"#, #"{"u":1,"usag":2,"usage" :3}"#, #"{"usage" "x","usage": 4}"#,
            #"{"a":""usage"","usage":5}"#, #"{"uuusage":1,"usage":{"x":1}}"#, #"{"x":"usage","usage":"#,
            #"{"usage":"#, #"{"usag"#, #""usage""#, #"usage"#, "", "u", #""u"#, #"{"usageX":1,"Usage":2}"#,
            String(repeating: #"{"uu":"u"u","#, count: 50) + #""usage":{"total_tokens":3}}"#,
        ]
        for c in cases {
            let got = Array(c.utf8).withUnsafeBytes { UsageTap.valueStart(of: #""usage""#, in: $0) }
            XCTAssertEqual(got, reference(c), c)
        }
    }

    /// A JSON answer's usage is read from the bytes captured as they passed, in whatever pieces
    /// they came; a capture grown past `reusedCapacity` gives its storage back at `reset`; an
    /// answer over `maxJSONCapture` is not read (and holds nothing).
    func testJSONAnswersInPiecesAndTheCaptureBounds() {
        let tap = UsageTap(hide: false)
        func answer(_ text: String, piece: Int) -> Int64? {
            tap.reset(hide: false)
            tap.begin(sse: false)
            let bytes = Array(text.utf8)
            var i = 0
            while i < bytes.count {
                let n = min(piece, bytes.count - i)
                bytes[i..<(i + n)].withUnsafeBytes { tap.observe($0) }
                i += n
            }
            tap.finish { _ in XCTFail("a JSON answer is not re-forwarded") }
            return tap.usage
        }
        let usage = #","usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}"#
        for piece in [1, 7, 4096] {
            XCTAssertEqual(answer(#"{"id":"a","choices":[]"# + usage, piece: piece), 11, "pieces of \(piece)")
        }
        let big = #"{"pad":""# + String(repeating: "x", count: UsageTap.reusedCapacity * 4) + "\"" + usage
        XCTAssertEqual(answer(big, piece: 1000), 11)
        XCTAssertGreaterThan(tap.json.capacity, UsageTap.reusedCapacity)
        tap.reset(hide: false)
        XCTAssertEqual(tap.json.capacity, 0, "a big capture's storage goes at reset")
        XCTAssertEqual(answer(#"{"usage":{"total_tokens":2}}"#, piece: 3), 2)
        let huge = #"{"pad":""# + String(repeating: "x", count: UsageTap.maxJSONCapture) + "\"" + usage
        XCTAssertNil(answer(huge, piece: 65536), "past maxJSONCapture the answer is not read")
        XCTAssertEqual(tap.json.readableBytes, 0)
    }

    /// One tap serves a connection's responses in turn: after `reset`, nothing of the previous
    /// response is left (its usage would otherwise settle, or label, the next request).
    func testResetForgetsThePreviousResponse() {
        let tap = UsageTap(hide: true)
        tap.begin(sse: true)
        let stream = "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
            + "data: {\"model\":\"m1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n"
        var forwarded = 0
        Array(stream.utf8).withUnsafeBytes { b in tap.filter(b) { _ in forwarded += 1 } }
        tap.finish { _ in forwarded += 1 }
        XCTAssertEqual(tap.usage, 7)
        XCTAssertEqual(tap.contentEvents, 1)
        XCTAssertEqual(tap.model, "m1")
        XCTAssertEqual(forwarded, 1, "the usage-only chunk is hidden")

        tap.reset(hide: false)
        XCTAssertNil(tap.usage); XCTAssertNil(tap.promptTokens); XCTAssertNil(tap.completionTokens)
        XCTAssertNil(tap.model); XCTAssertEqual(tap.contentEvents, 0); XCTAssertFalse(tap.hide); XCTAssertFalse(tap.sse)
        tap.begin(sse: false)
        let json = #"{"model":"m2","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#
        Array(json.utf8).withUnsafeBytes { tap.observe($0) }
        tap.finish { _ in }
        XCTAssertEqual(tap.usage, 3)
        XCTAssertEqual(tap.model, "m2")

        tap.reset(hide: false)
        tap.begin(sse: false)
        Array(#"{"model":"m3","choices":[]}"#.utf8).withUnsafeBytes { tap.observe($0) }
        tap.finish { _ in }
        XCTAssertNil(tap.usage, "no usage in this answer: none from the one before")
        XCTAssertEqual(tap.model, "m3")
    }

    /// The served model's name is kept from one response to the next (a String is made only when
    /// the bytes change): the same name, another, an empty one, a long one, the first again.
    func testServedModelNameAcrossResponses() {
        let tap = UsageTap(hide: false)
        let names = ["gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18", "m2", "m2x", "m2", "m", "", "", "m",
                     "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-19"]
        for name in names {
            tap.reset(hide: false)
            tap.begin(sse: false)
            Array("{\"model\":\"\(name)\",\"choices\":[]}".utf8).withUnsafeBytes { tap.observe($0) }
            tap.finish { _ in }
            XCTAssertEqual(tap.model, name)
        }
        tap.reset(hide: false)
        tap.begin(sse: false)
        Array(#"{"model":"a\"b","choices":[]}"#.utf8).withUnsafeBytes { tap.observe($0) }
        XCTAssertNil(tap.model, "an escaped name is not read")
        for body in [#"{"model":"gpt-4o-mini-2024-07-19\"x","choices":[]}"#, #"{"model":"gpt-4o-mini-2024-07-19"#] {
            tap.reset(hide: false)
            tap.begin(sse: false)
            Array(body.utf8).withUnsafeBytes { tap.observe($0) }
            XCTAssertNil(tap.model, "the last name's bytes, then no closing quote: \(body)")
        }
    }
}
