import XCTest
@testable import PortcullisHTTP
import PortcullisTestSupport

/// Seeded random and mutated inputs through every parser: they must answer (complete,
/// incomplete or an error), never crash, and never accept a request whose framing is ambiguous.
/// (Coverage-guided fuzz targets arrive with the hardening issue; this keeps the basics in CI.)
final class RandomInputTests: XCTestCase {
    static let seeds: [[UInt8]] = [
        "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    ].map { Array($0.utf8) }

    func mutate(_ input: [UInt8], _ rng: inout SeededRandom) -> [UInt8] {
        var b = input
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            let op = Int.random(in: 0..<5, using: &rng)
            let i = b.isEmpty ? 0 : Int.random(in: 0..<b.count, using: &rng)
            switch op {
            case 0 where !b.isEmpty: b[i] = UInt8.random(in: 0...255, using: &rng)
            case 1: b.insert([13, 10, 0, 32, 58, 9, 59][Int.random(in: 0..<7, using: &rng)], at: i)
            case 2 where !b.isEmpty: b.remove(at: i)
            case 3: b.insert(contentsOf: Array("Content-Length: 7\r\n".utf8), at: i)
            default: b.insert(contentsOf: Array("Transfer-Encoding: chunked\r\n".utf8), at: i)
            }
        }
        return b
    }

    func testParsersSurviveMutatedAndRandomInput() {
        var rng = SeededRandom(seed: 0x5EED)
        let request = HTTPRequestParser(limits: HTTPParserLimits(maxHeaderBytes: 4096))
        let response = HTTPResponseParser(maxHeaderBytes: 4096)
        for n in 0..<20_000 {
            let input: [UInt8]
            if n % 4 == 0 {
                input = (0..<Int.random(in: 0..<300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                input = mutate(Self.seeds[n % Self.seeds.count], &rng)
            }
            input.withUnsafeBytes { raw in
                if case .complete(let h, let consumed) = request.parse(raw) {
                    XCTAssertLessThanOrEqual(consumed, raw.count)
                    let lengths = h.headers.filter { $0.known == .contentLength }.count
                    let te = h.headers.contains { $0.known == .transferEncoding }
                    XCTAssertFalse(lengths > 1 || (lengths == 1 && te), "ambiguous framing accepted: \(Array(raw))")
                }
                if case .complete(_, let consumed) = response.parse(raw, requestMethod: "POST") {
                    XCTAssertLessThanOrEqual(consumed, raw.count)
                }
                var chunked = ChunkedDecoder()
                var total = 0
                if case .finished(let c) = chunked.feed(raw, onData: { total += $0.count }) {
                    XCTAssertLessThanOrEqual(c, raw.count)
                }
                XCTAssertLessThanOrEqual(total, raw.count)
            }
        }
    }
}
