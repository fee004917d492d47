import XCTest
@testable import PortcullisCore

/// `ByteWord.firstIndex` against a byte-by-byte search: every byte value at every position
/// (alone, and after or before the other sought byte), and random words full of near misses.
final class ByteWordTests: XCTestCase {
    func oracle(_ bytes: [UInt8], _ a: UInt8, _ b: UInt8) -> Int? { bytes.firstIndex { $0 == a || $0 == b } }
    func word(_ bytes: [UInt8]) -> UInt64 { bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }

    func testEveryByteAtEveryPosition() {
        for (a, b) in [(UInt8(0x3A), UInt8(0x0D)), (0x22, 0x5C), (0x00, 0xFF), (0x01, 0x80)] {
            for pos in 0..<8 {
                for c in 0...UInt8.max {
                    for fill in [UInt8(0x61), a &+ 1, a &- 1, b &+ 1, 0x00, 0xFF] where fill != a && fill != b {
                        var bytes = [UInt8](repeating: fill, count: 8)
                        bytes[pos] = c
                        XCTAssertEqual(ByteWord.firstIndex(of: a, or: b, in: word(bytes)), oracle(bytes, a, b), "\(a) \(b) \(bytes)")
                        if pos < 7 {
                            bytes[7] = b    // a later hit never hides an earlier one, nor a borrow invents one
                            XCTAssertEqual(ByteWord.firstIndex(of: a, or: b, in: word(bytes)), oracle(bytes, a, b), "\(a) \(b) \(bytes)")
                        }
                    }
                }
            }
        }
    }

    func testRandomWords() {
        var rng = SystemRandomNumberGenerator()
        let near: [UInt8] = [0x21, 0x22, 0x23, 0x5B, 0x5C, 0x5D, 0x00, 0x01, 0x80, 0xA2, 0xDC, 0xFF]
        for _ in 0..<200_000 {
            let bytes = (0..<8).map { _ in near[Int.random(in: 0..<near.count, using: &rng)] }
            XCTAssertEqual(ByteWord.firstIndex(of: 0x22, or: 0x5C, in: word(bytes)), oracle(bytes, 0x22, 0x5C), "\(bytes)")
        }
    }

    /// `isPlainJSONStringWord` against the byte rule (0x20–0x7F, not `"` or `\`): every byte
    /// value at every position among plain and edge fillers, then two odd bytes in one word.
    func testPlainJSONStringWords() {
        func plain(_ c: UInt8) -> Bool { c >= 0x20 && c < 0x80 && c != 0x22 && c != 0x5C }
        for pos in 0..<8 {
            for c in 0...UInt8.max {
                for fill in [UInt8(0x61), 0x20, 0x7F, 0x21, 0x5D, 0x23, 0x5B] {
                    var bytes = [UInt8](repeating: fill, count: 8)
                    bytes[pos] = c
                    XCTAssertEqual(ByteWord.isPlainJSONStringWord(word(bytes)), bytes.allSatisfy(plain), "\(bytes)")
                }
            }
        }
        var rng = SystemRandomNumberGenerator()
        let near: [UInt8] = [0x00, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x5B, 0x5C, 0x5D, 0x7E, 0x7F, 0x80, 0xA2, 0xFF, 0x41]
        for _ in 0..<200_000 {
            let bytes = (0..<8).map { _ in near[Int.random(in: 0..<near.count, using: &rng)] }
            XCTAssertEqual(ByteWord.isPlainJSONStringWord(word(bytes)), bytes.allSatisfy(plain), "\(bytes)")
        }
    }
}
