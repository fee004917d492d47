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
}
