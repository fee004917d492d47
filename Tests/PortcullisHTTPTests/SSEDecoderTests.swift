import XCTest
@testable import PortcullisHTTP
import PortcullisTestSupport

/// SSE framing: events split anywhere, every line-ending style, data extraction.
final class SSEDecoderTests: XCTestCase {
    func events(_ text: String, step: Int) -> ([String], String) {
        var d = SSEDecoder()
        var out: [String] = []
        forEachSlice(of: Array(text.utf8), step: step) {
            _ = d.feed($0) { out.append(String(decoding: $0, as: UTF8.self)) }
        }
        d.finish { out.append(String(decoding: $0, as: UTF8.self)) }
        return (out, String(decoding: d.partial, as: UTF8.self))
    }

    func testEveryLineEndingAndEverySplit() {
        let cases: [(String, [String])] = [
            ("data: a\n\ndata: b\n\n", ["data: a\n\n", "data: b\n\n"]),
            ("data: a\r\n\r\nevent: x\r\ndata: b\r\n\r\n", ["data: a\r\n\r\n", "event: x\r\ndata: b\r\n\r\n"]),
            ("data: a\r\rdata: b\r\r", ["data: a\r\r", "data: b\r\r"]),
            (": ping\n\ndata: {\"x\":1}\ndata: 2\n\n", [": ping\n\n", "data: {\"x\":1}\ndata: 2\n\n"]),
        ]
        for (text, expected) in cases {
            for step in [1, 2, 3, 5, 1000] {
                XCTAssertEqual(events(text, step: step).0, expected, "\(text.debugDescription) step \(step)")
            }
        }
        XCTAssertEqual(events("data: a\n\ndata: half", step: 4).1, "data: half")
    }

    func testDataExtraction() {
        func data(_ s: String) -> String? { Array(s.utf8).withUnsafeBytes { SSEDecoder.data(of: $0).map { String(decoding: $0, as: UTF8.self) } } }
        XCTAssertEqual(data("data: {\"a\":1}\n\n"), "{\"a\":1}")
        XCTAssertEqual(data("event: e\r\ndata:x\r\ndata:  y\r\n\r\n"), "x\n y")
        XCTAssertNil(data(": comment\n\n"))
        XCTAssertEqual(data("data: [DONE]\n\n"), "[DONE]")
    }

    func testOversizedEventIsReported() {
        var d = SSEDecoder(maxEventBytes: 8)
        let r = Array("data: 0123456789".utf8).withUnsafeBytes { d.feed($0) { _ in } }
        XCTAssertEqual(r, .eventTooLarge)
    }

    /// The line rules read byte by byte (the decoder before it took runs a word at a time): the
    /// oracle for the one below.
    struct ByteByByte {
        var partial: [UInt8] = []
        var atLineStart = true, afterCR = false, eventEndsAfterCR = false
        let maxEventBytes: Int
        mutating func feed(_ bytes: [UInt8], onEvent: ([UInt8]) -> Void) -> Bool {
            func emit() { onEvent(partial); partial.removeAll(); atLineStart = true; afterCR = false }
            for c in bytes {
                if eventEndsAfterCR {
                    eventEndsAfterCR = false
                    if c == 10 { partial.append(c); emit(); afterCR = false; continue }
                    emit()
                }
                partial.append(c)
                if c == 13 {
                    if atLineStart { eventEndsAfterCR = true } else { atLineStart = true }
                    afterCR = true
                } else if c == 10 {
                    if afterCR { afterCR = false; continue }
                    if atLineStart { emit() } else { atLineStart = true }
                } else {
                    atLineStart = false; afterCR = false
                }
                if partial.count > maxEventBytes { return false }
            }
            return true
        }
    }

    /// Random streams of SSE-ish bytes (letters, `data:`, CR, LF, CRLF, long runs), fed whole and
    /// in random slices with small and large event bounds: the same events in the same order, the
    /// same `eventTooLarge` answer, and the same bytes kept, as the byte-by-byte oracle.
    func testRunsAtATimeAgreeWithTheByteByByteRules() {
        var rng = SystemRandomNumberGenerator()
        let pieces: [[UInt8]] = [[13], [10], [13, 10], Array("data: ".utf8), Array("x".utf8), Array("{\"a\":1}".utf8),
                                 Array(repeating: 97, count: 23), Array(repeating: 98, count: 9), [13, 13], [10, 10]]
        for round in 0..<3000 {
            var input: [UInt8] = []
            for _ in 0..<Int.random(in: 0...30, using: &rng) { input += pieces[Int.random(in: 0..<pieces.count, using: &rng)] }
            let bound = round % 3 == 0 ? 12 : round % 3 == 1 ? 40 : 1 << 20
            var oracle = ByteByByte(maxEventBytes: bound)
            var want: [[UInt8]] = []
            var wantOK = true
            var k = 0
            var d = SSEDecoder(maxEventBytes: bound)
            var got: [[UInt8]] = []
            var gotOK = true
            while k < input.count || k == 0 {
                let j = min(input.count, k + Int.random(in: 1...17, using: &rng))
                let slice = Array(input[k..<j])
                if wantOK { wantOK = oracle.feed(slice) { want.append($0) } }
                if gotOK { gotOK = slice.withUnsafeBytes { d.feed($0) { got.append(Array($0)) } } == .ok }
                k = j
                if input.isEmpty { break }
            }
            XCTAssertEqual(gotOK, wantOK, "\(input)")
            XCTAssertEqual(got, want, "\(input)")
            if gotOK && wantOK { XCTAssertEqual(d.partial, oracle.partial, "\(input)") }
            if got != want || gotOK != wantOK { return }
        }
    }

    /// `data(of:)` finds line ends a word at a time: on random events (data and other fields,
    /// every line ending, long values), the same data as reading byte by byte; `withData(of:)`
    /// passes the same bytes.
    func testDataAgreesWithTheByteByByteReading() {
        func oracle(_ ev: [UInt8]) -> [UInt8]? {
            var out: [UInt8]? = nil
            var i = 0
            while i < ev.count {
                var e = i
                while e < ev.count && ev[e] != 10 && ev[e] != 13 { e += 1 }
                if e - i >= 5 && Array(ev[i..<(i + 5)]) == Array("data:".utf8) {
                    var v = i + 5
                    if v < e && ev[v] == 32 { v += 1 }
                    if out == nil { out = [] } else { out!.append(10) }
                    out! += ev[v..<e]
                }
                if e < ev.count && ev[e] == 13 && e + 1 < ev.count && ev[e + 1] == 10 { e += 1 }
                i = e + 1
            }
            return out
        }
        var rng = SystemRandomNumberGenerator()
        let lines = ["data: x", "data:", "data:  two", "event: e", ": c", "data: " + String(repeating: "v", count: 29), "id: 7", ""]
        let ends = ["\n", "\r", "\r\n"]
        for _ in 0..<3000 {
            var ev: [UInt8] = []
            for _ in 0..<Int.random(in: 0...6, using: &rng) {
                ev += Array(lines[Int.random(in: 0..<lines.count, using: &rng)].utf8) + Array(ends[Int.random(in: 0..<3, using: &rng)].utf8)
            }
            let got = ev.withUnsafeBytes { SSEDecoder.data(of: $0) }
            if got != oracle(ev) { return XCTFail("\(ev): \(String(describing: got))") }
            // The same bytes in place (one data line) or joined (several).
            let inPlace = ev.withUnsafeBytes { SSEDecoder.withData(of: $0) { $0.map { Array($0) } } }
            if inPlace != got { return XCTFail("withData \(ev): \(String(describing: inPlace))") }
        }
    }
}
