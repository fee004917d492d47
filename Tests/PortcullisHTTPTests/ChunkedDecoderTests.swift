import XCTest
@testable import PortcullisHTTP

final class ChunkedDecoderTests: XCTestCase {
    /// Feeds `input` split into pieces of `step` bytes; returns decoded data and the outcome.
    func decode(_ input: String, step: Int = Int.max, limit: Int = Int.max) -> (String, ChunkedDecoder.Outcome) {
        var d = ChunkedDecoder(maxBodyBytes: limit)
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
            case .invalid, .tooLarge: return (String(decoding: out, as: UTF8.self), last)
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

    func testChunkExtensionsFollowTheGrammar() {
        for good in ["5;a\r\nhello\r\n0\r\n\r\n", "5;a=b\r\nhello\r\n0\r\n\r\n", "5 ; a = b ; c\r\nhello\r\n0\r\n\r\n",
                     "5;a=\"x y\\\"z\"\r\nhello\r\n0\r\n\r\n", "5;a=b;c=\"\"\r\nhello\r\n0;last\r\n\r\n"] {
            for step in [Int.max, 1] {
                XCTAssertEqual(decode(good, step: step).0, "hello", "\(good.debugDescription) step \(step)")
                guard case .finished = decode(good, step: step).1 else { return XCTFail("refused \(good.debugDescription)") }
            }
        }
        for bad in ["5;\r\nhello\r\n0\r\n\r\n", "5;=b\r\nhello\r\n", "5;a=\r\nhello\r\n", "5;a=\"open\r\nhello\r\n",
                    "5;a b\r\nhello\r\n", "5 x\r\nhello\r\n", "5;a=b c\r\nhello\r\n", "5;a=(b)\r\nhello\r\n",
                    "5;a\u{01}\r\nhello\r\n", "5;a=\"\u{7f}\"\r\nhello\r\n", "5 \r\nhello\r\n"] {
            guard case .invalid = decode(bad).1 else { return XCTFail("accepted \(bad.debugDescription): \(decode(bad).1)") }
        }
    }

    func testTrailerLinesAreHeaderFields() {
        let good = "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:\t v \r\n\r\n"
        guard case .finished = decode(good, step: 1).1 else { return XCTFail("refused valid trailers") }
        for bad in ["0\r\nno colon here\r\n\r\n", "0\r\n: novalue\r\n\r\n", "0\r\n folded: x\r\n\r\n",
                    "0\r\nName : x\r\n\r\n", "0\r\nName: a\u{00}b\r\n\r\n", "0\r\nNa(me): x\r\n\r\n"] {
            guard case .invalid = decode(bad).1 else { return XCTFail("accepted \(bad.debugDescription)") }
        }
    }

    func testDeclaredSizeOverTheLimitIsRefusedAtOnce() {
        // The size line alone is enough: no data needs to arrive.
        XCTAssertEqual(decode("ffffffff", limit: 1000).1, .tooLarge)
        XCTAssertEqual(decode("3e9", limit: 1000).1, .tooLarge)               // 1001
        XCTAssertEqual(decode("3e8\r\n", limit: 1000).1, .needMore)           // exactly 1000
        XCTAssertEqual(decode("200\r\n" + String(repeating: "a", count: 512) + "\r\n1e8\r\n", limit: 1000).1, .needMore)
        XCTAssertEqual(decode("200\r\n" + String(repeating: "a", count: 512) + "\r\n1e9\r\n", limit: 1000).1, .tooLarge)
    }
}
