import XCTest
@testable import PortcullisCore

/// A minted request id is its two integers as 32 lowercase hex digits, the same whichever way it
/// is written out (a String, a byte buffer, a byte writer); a given one is its bytes as sent.
final class RequestIDTests: XCTestCase {
    func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    func testMintedIDsAreThirtyTwoHexDigitsEverywhere() {
        let samples: [(UInt64, UInt64)] = [(0, 0), (1, 0xF), (.max, .max), (0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210),
                                           (0xA000_0000_0000_000A, 0x9)]
        for (a, b) in samples {
            let id = RequestID(high: a, low: b)
            let want = hex(a) + hex(b)
            XCTAssertEqual(id.description, want)
            XCTAssertEqual(id.utf8Count, 32)
            let buffer = ByteBuffer(capacity: 8)
            buffer.append("x: ")
            buffer.append(id)
            XCTAssertEqual(String(decoding: buffer.readable, as: UTF8.self), "x: " + want)
            let bytes = [UInt8](unsafeUninitializedCapacity: 34) { b, n in
                var w = UnsafeByteWriter(b)
                w.put("x:"); w.put(id)
                n = w.count
            }
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self), "x:" + want)
            XCTAssertEqual(id.withUTF8Bytes { String(decoding: $0, as: UTF8.self) }, want)
        }
    }

    /// The word-at-a-time hex digits: every digit value at every position, and random values.
    func testHexDigitsOfEveryNibbleAtEveryPosition() {
        var values: [UInt64] = []
        for position in 0..<16 { for digit in 0..<16 { values.append(UInt64(digit) << (4 * UInt64(position))) } }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2_000 { values.append(rng.next()) }
        for v in values {
            var out = [UInt8](repeating: 0, count: 16)
            out.withUnsafeMutableBufferPointer { b in if let p = b.baseAddress { RequestID.writeHex(v, to: p) } }
            XCTAssertEqual(String(decoding: out, as: UTF8.self), hex(v))
        }
    }

    func testGivenIDsAreKeptAsSent() {
        for s in ["client-id-123", "a", String(repeating: "z", count: 128)] {
            let id = RequestID(s)
            XCTAssertEqual(id.description, s)
            XCTAssertEqual(id.utf8Count, s.utf8.count)
            let buffer = ByteBuffer(capacity: 4)
            buffer.append(id)
            XCTAssertEqual(String(decoding: buffer.readable, as: UTF8.self), s)
        }
    }
}
