import XCTest
@testable import PortcullisCore

/// `SplicedBytes`: the pieces from any offset are exactly the joined bytes from that offset,
/// for splices at the start, the middle and the end, empty inserts and empty ranges.
final class SplicedBytesTests: XCTestCase {
    private func check(_ s: SplicedBytes, _ expected: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(s.joined(), expected, file: file, line: line)
        XCTAssertEqual(s.count, expected.count, file: file, line: line)
        for offset in 0...expected.count {
            let rest = s.withPieces(from: offset) { a, b, c in Array(a) + Array(b) + Array(c) }
            XCTAssertEqual(rest, Array(expected[offset...]), "from \(offset)", file: file, line: line)
        }
    }

    func testWholeBytesAreTheirOwnPieces() {
        check(SplicedBytes(Array("hello".utf8)), Array("hello".utf8))
        check(SplicedBytes([]), [])
    }

    func testEverySpliceReadsAsTheJoinedBytes() {
        let base = Array(#"{"model":"chat-default","messages":[]}"#.utf8)
        for lo in 0...base.count {
            for hi in lo...base.count {
                for insert in [[UInt8](), Array(#""gpt-4o-mini""#.utf8)] {
                    let expected = Array(base[..<lo]) + insert + Array(base[hi...])
                    check(SplicedBytes(base, replacing: lo..<hi, with: insert), expected)
                }
            }
        }
    }
}
