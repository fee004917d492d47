import XCTest
@testable import PortcullisHTTP

final class HTTPResponseParserTests: XCTestCase {
    let parser = HTTPResponseParser()

    func parse(_ s: String, method: String = "POST") -> HeadParseResult<HTTPResponseHead> {
        Array(s.utf8).withUnsafeBytes { parser.parse($0, requestMethod: method) }
    }

    func testFramings() {
        guard case .complete(let a, _) = parse("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n") else { return XCTFail() }
        XCTAssertEqual(a.framing, .length(12)); XCTAssertTrue(a.keepAlive)
        guard case .complete(let b, _) = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") else { return XCTFail() }
        XCTAssertEqual(b.framing, .chunked)
        guard case .complete(let c, _) = parse("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n") else { return XCTFail() }
        XCTAssertEqual(c.framing, .untilClose); XCTAssertFalse(c.keepAlive)
        guard case .complete(let d, _) = parse("HTTP/1.1 204 No Content\r\n\r\n") else { return XCTFail() }
        XCTAssertEqual(d.framing, .none)
        guard case .complete(let e, _) = parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", method: "HEAD") else { return XCTFail() }
        XCTAssertEqual(e.framing, .none)
        guard case .complete(let f, _) = parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n") else { return XCTFail() }
        XCTAssertFalse(f.keepAlive)
        guard case .complete(let g, _) = parse("HTTP/1.1 429 \r\nContent-Length: 0\r\n\r\n") else { return XCTFail() }
        XCTAssertEqual(g.status, 429)
    }

    /// A standard reason phrase is recognised on its bytes and kept as "" (the prebuilt status
    /// line is relayed); any other phrase, or the standard one of another status, is kept as sent.
    func testReasonPhraseKeptOnlyWhenNotStandard() {
        for (line, reason) in [("HTTP/1.1 200 OK", ""), ("HTTP/1.1 404 Not Found", ""), ("HTTP/1.1 200 Okay", "Okay"),
                               ("HTTP/1.1 200 O", "O"), ("HTTP/1.1 200 OKK", "OKK"), ("HTTP/1.1 200 ok", "ok"),
                               ("HTTP/1.1 404 OK", "OK"), ("HTTP/1.1 599 Status", ""), ("HTTP/1.1 200 ", "")] {
            guard case .complete(let h, _) = parse(line + "\r\nContent-Length: 0\r\n\r\n") else { return XCTFail(line) }
            XCTAssertEqual(h.reason, reason, line)
        }
        XCTAssertEqual(HTTPStatus.reason(200), "OK")
        XCTAssertEqual(HTTPStatus.reason(503), "Service Unavailable")
    }

    func testRejectsAmbiguousUpstreamFraming() {
        guard case .failure(let e) = parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n") else { return XCTFail() }
        XCTAssertEqual(e.status, 502)
        guard case .failure = parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n") else { return XCTFail() }
        guard case .failure = parse("HTTP/9 OK\r\n\r\n") else { return XCTFail() }
        guard case .failure = parse("garbage\r\n\r\n") else { return XCTFail() }
    }

    func testIncomplete() {
        guard case .incomplete = parse("HTTP/1.1 200 OK\r\nContent-") else { return XCTFail() }
    }

    /// A head over `maxHeaderBytes` is refused whether it came in one read or byte by byte; one
    /// at the limit is accepted both ways.
    func testTheHeadLimitHoldsHoweverTheHeadArrives() {
        let small = HTTPResponseParser(maxHeaderBytes: 64)
        for size in [64, 65, 200] {
            let start = "HTTP/1.1 200 OK\r\nX: "
            let text = start + String(repeating: "v", count: size - start.utf8.count - 4) + "\r\n\r\n"
            let bytes = Array(text.utf8)
            XCTAssertEqual(bytes.count, size)
            let whole = bytes.withUnsafeBytes { small.parse($0, requestMethod: "GET") }
            var stepped: HeadParseResult<HTTPResponseHead> = .incomplete
            for n in 1...bytes.count {
                stepped = bytes.withUnsafeBytes { small.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n]), requestMethod: "GET") }
                if case .incomplete = stepped { continue }
                break
            }
            switch (whole, stepped) {
            case (.complete(_, let a), .complete(_, let b)): XCTAssertTrue(size <= 64 && a == size && b == size, "\(size)")
            case (.failure, .failure): XCTAssertGreaterThan(size, 64)
            default: XCTFail("\(size) bytes: whole \(whole), byte by byte \(stepped)")
            }
        }
    }

    func testStatusLineIsStrict() {
        for good in ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.0 599 Custom\tReason\r\n\r\n", "HTTP/1.1 100 \r\n\r\n"] {
            guard case .complete = parse(good) else { return XCTFail("refused \(good.debugDescription)") }
        }
        for bad in ["HTTP/1.1 200\r\n\r\n", "HTTP/1.1 099 Low\r\n\r\n", "HTTP/1.1 600 High\r\n\r\n",
                    "HTTP/1.1 000 Zero\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n",
                    "HTTP/1.1 200 O\u{01}K\r\n\r\n", "HTTP/1.1 200 \u{7f}\r\n\r\n", "HTTP/2.0 200 OK\r\n\r\n",
                    "HTTP/1.1  200 OK\r\n\r\n", "http/1.1 200 OK\r\n\r\n"] {
            guard case .failure(let e) = parse(bad) else { return XCTFail("accepted \(bad.debugDescription)") }
            XCTAssertEqual(e.status, 502)
        }
        let obsText: [UInt8] = Array("HTTP/1.1 200 ".utf8) + [0xC3, 0xA9] + Array("\r\n\r\n".utf8)
        guard case .failure = obsText.withUnsafeBytes({ HTTPResponseParser().parse($0, requestMethod: "GET") }) else {
            return XCTFail("non-ASCII reason accepted")
        }
    }
}
