import XCTest
@testable import PortcullisHTTP

final class ChunkedDecoderTests: XCTestCase {
    /// Feeds `input` split into pieces of `step` bytes; returns decoded data and the outcome.
    func decode(_ input: String, step: Int = Int.max) -> (String, ChunkedDecoder.Outcome) {
        var d = ChunkedDecoder()
        var out: [UInt8] = []
        let bytes = Array(input.utf8)
        var i = 0
        var last = ChunkedDecoder.Outcome.needMore
        while i < bytes.count {
            let end = min(bytes.count, i &+ step)
            let piece = Array(bytes[i..<end])
            last = piece.withUnsafeBytes { d.feed($0) { out += $0 } }
            switch last {
            case .needMore: i = end
            case .finished(let c): return (String(decoding: out, as: UTF8.self), .finished(consumed: i + c))
            case .invalid: return (String(decoding: out, as: UTF8.self), last)
            }
        }
        return (String(decoding: out, as: UTF8.self), last)
    }

    func testDecodesWholeAndByteByByte() {
        let body = "5\r\nhello\r\n7;ext=1\r\n, world\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT"
        for step in [Int.max, 1, 2, 3, 7] {
            let (data, outcome) = decode(body, step: step)
            XCTAssertEqual(data, "hello, world0123456789", "step \(step)")
            XCTAssertEqual(outcome, .finished(consumed: body.utf8.count - 4), "step \(step)")
        }
    }

    func testUppercaseHex() {
        XCTAssertEqual(decode("A\r\n0123456789\r\n0\r\n\r\n").0, "0123456789")
        XCTAssertEqual(decode("a\r\n0123456789\r\n0\r\n\r\n").0, "0123456789")
    }

    func testRejectsBadSizes() {
        for bad in ["\r\nhello\r\n0\r\n\r\n", "zz\r\n", "-1\r\n", "5\nhello\r\n", "1ffffffffffffffff\r\n", "5\r\nhelloXX0\r\n\r\n"] {
            if case .invalid = decode(bad).1 { continue }
            XCTFail("accepted \(bad.debugDescription): \(decode(bad).1)")
        }
    }

    func testIncompleteNeedsMore() {
        XCTAssertEqual(decode("5\r\nhel").1, .needMore)
        XCTAssertEqual(decode("5\r\nhello\r\n0\r\n").1, .needMore)
    }
}
