import XCTest
import PortcullisTestSupport
@testable import PortcullisJSON

/// `skipNested`, the part of the lenient scan that passes over nested values: its block form
/// (x86-64: 64 bytes at a time) must give exactly the byte-by-byte form's answer — the index of
/// the bracket that closes the depth-2 value, and the depth there — on any text, well-formed
/// or not, wherever the block boundaries fall.
final class NestedValueSkipTests: XCTestCase {
    /// Both forms from `start` at `depth`; the block form is the x86-64 one (elsewhere
    /// `skipNested` is the byte form itself, and the comparison is trivially true).
    private func both(_ text: [UInt8], start: Int = 0, depth: Int = 2) -> (bytes: (Int, Int), chosen: (Int, Int)) {
        text.withUnsafeBufferPointer { b in
            let p = b.baseAddress ?? UnsafePointer(bitPattern: 1)!
            var d1 = depth, d2 = depth
            let a = JSONReader.skipNestedBytes(p, b.count, start, &d1)
            let c = JSONReader.skipNested(p, b.count, start, &d2)
            return ((a, a < 0 ? -1 : d1), (c, c < 0 ? -1 : d2))
        }
    }

    private func check(_ text: [UInt8], start: Int = 0, depth: Int = 2, _ why: @autoclosure () -> String = "") {
        let r = both(text, start: start, depth: depth)
        XCTAssertEqual(r.bytes.0, r.chosen.0, "index: \(why()) \(String(decoding: text, as: UTF8.self).debugDescription)")
        XCTAssertEqual(r.bytes.1, r.chosen.1, "depth: \(why()) \(String(decoding: text, as: UTF8.self).debugDescription)")
    }

    func testWellFormedValuesEndAtTheirClosingBracket() {
        // `[` already read (depth 2); the skip ends at the `]` that closes it, whatever is inside.
        let tools = (0..<40).map { #"{"type":"function","function":{"name":"t\#($0)","parameters":{"a":[1,2,{"b":"]}"}]}}}"# }
        for inner in [#"1,2,3"#, #""a]b}c""#, #""\"]""#, #""\\""#, tools.joined(separator: ","),
                      #""\#(String(repeating: "long text without a quote ", count: 40))""#,
                      #""\#(String(repeating: #"escaped \" quote and \\ backslash "#, count: 30))""#] {
            let text = Array((inner + "],\"next\":1}").utf8)
            var depth = 2
            let end = text.withUnsafeBufferPointer { JSONReader.skipNested($0.baseAddress!, $0.count, 0, &depth) }
            XCTAssertEqual(end, inner.utf8.count, inner.prefix(60).debugDescription)
            XCTAssertEqual(depth, 2)
            check(text)
        }
    }

    func testTextThatEndsFirstHasNoAnswer() {
        for text in [#"[1,2"#, #""open string"#, #""ends on a backslash \"#, String(repeating: "{", count: 200),
                     #""\#(String(repeating: "x", count: 300))"#, ""] {
            var depth = 2
            let end = Array(text.utf8).withUnsafeBufferPointer { JSONReader.skipNested($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count, 0, &depth) }
            XCTAssertEqual(end, -1, text.prefix(40).debugDescription)
            check(Array(text.utf8))
        }
    }

    /// A backslash or quote at every offset around a block's end: the escaped byte in the next
    /// block, a quote as a block's last or first byte, a string spanning blocks.
    func testEveryBoundaryPosition() {
        for pad in 0..<140 {
            for probe in [#"\""#, #"\\"#, #"""#, "]", "[", #"\]"#, "}", #""]""#] {
                let text = Array((#"""# + String(repeating: "a", count: pad) + probe + #"x"],"b":[1]]]"#).utf8)
                check(text, "pad \(pad) probe \(probe)")
                let outside = Array((String(repeating: " ", count: pad) + probe + #"x"]"]}]"#).utf8)
                check(outside, depth: 3, "pad \(pad) probe \(probe) outside a string")
            }
        }
    }

    /// Random texts of the bytes that steer the skip, long enough to span many blocks, from
    /// random starting depths and offsets.
    func testBlockFormMatchesByteFormOnRandomTexts() {
        let pieces = ["{", "}", "[", "]", ":", ",", "\"", "\\", "\\\"", "\\\\", " ", "\n", "1", "true", "\"ab\"", "é",
                      "\"" + String(repeating: "long ", count: 30) + "\"", String(repeating: "x", count: 50), "\u{0}"]
        var rng = SeededRandom(seed: 7)
        for round in 0..<20_000 {
            let count = Int.random(in: 0...(round % 10 == 0 ? 400 : 60), using: &rng)
            var text = ""
            for _ in 0..<count { text += pieces[Int.random(in: 0..<pieces.count, using: &rng)] }
            let bytes = Array(text.utf8)
            check(bytes, depth: Int.random(in: 2...5, using: &rng), "round \(round)")
        }
    }
}
