import XCTest
@testable import PortcullisHTTP

/// Comma-separated header values read as bytes (RFC 9110 §5.6.1): elements without the
/// whitespace around them, empty ones skipped, compared ignoring ASCII case only.
final class HeaderListTests: XCTestCase {
    func elements(_ value: String) -> [String] {
        let b = Array(value.utf8)
        var out: [String] = []
        b.withUnsafeBytes { HeaderList.forEach($0, 0, $0.count) { out.append(String(decoding: $0, as: UTF8.self)) } }
        return out
    }

    func testElements() {
        XCTAssertEqual(elements("keep-alive"), ["keep-alive"])
        XCTAssertEqual(elements(" a ,\tB\t, ,,c d,"), ["a", "B", "c d"])
        XCTAssertEqual(elements(""), [])
        XCTAssertEqual(elements(",, \t ,"), [])
        // A slice of a longer buffer: only its bytes.
        let b = Array("x: close, keep-alive\r\n".utf8)
        var seen: [String] = []
        b.withUnsafeBytes { HeaderList.forEach($0, 3, 20) { seen.append(String(decoding: $0, as: UTF8.self)) } }
        XCTAssertEqual(seen, ["close", "keep-alive"])
    }

    func testEqualsIgnoresASCIICaseOnly() {
        func eq(_ s: String, _ lit: StaticString) -> Bool { Array(s.utf8).withUnsafeBytes { HeaderList.equals($0, lit) } }
        XCTAssertTrue(eq("Keep-Alive", "keep-alive"))
        XCTAssertTrue(eq("CLOSE", "close"))
        XCTAssertFalse(eq("closed", "close"))
        XCTAssertFalse(eq("clos", "close"))
        XCTAssertFalse(eq("\u{212A}eep-alive", "keep-alive"), "the Kelvin sign is not a K")
    }

    func testFoldedNames() {
        let folded = Array("X_Drop-Me".utf8).withUnsafeBytes { HeaderList.folded($0) }
        XCTAssertEqual(String(decoding: folded, as: UTF8.self), "x-drop-me")
        for (name, same) in [("x-drop-me", true), ("X-DROP_ME", true), ("x_drop_me", true), ("x-drop-mE ", false), ("x-drop-m", false)] {
            let b = Array(("a:" + name).utf8)
            XCTAssertEqual(b.withUnsafeBytes { HeaderList.foldedEquals($0, 2, $0.count, folded) }, same, name)
        }
    }

    /// `contains` reads a word at a time: the byte is found at every position of spans of 1–20
    /// bytes, and never outside the span.
    func testContainsAtEveryPosition() {
        for n in 1...20 {
            for at in -1..<(n + 1) {
                var b = [UInt8](repeating: UInt8(ascii: "a"), count: n + 2)
                b[at + 1] = 95
                let want = at >= 0 && at < n
                XCTAssertEqual(b.withUnsafeBytes { HeaderList.contains(95, $0, 1, n + 1) }, want, "length \(n), at \(at)")
            }
        }
    }

    /// Connection and Transfer-Encoding lists, in request and response heads, read element by
    /// element: case, whitespace and empty elements do not change what they say.
    func testHeadsReadTheirLists() throws {
        for (text, keepAlive) in [("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade , CLOSE\r\n\r\n", false),
                                  ("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true),
                                  ("GET / HTTP/1.0\r\nConnection: x, ,\tKeep-Alive\r\n\r\n", true),
                                  ("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false)] {
            let b = Array(text.utf8)
            guard case .complete(let h, _) = b.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { return XCTFail(text) }
            XCTAssertEqual(h.keepAlive, keepAlive, text)
        }
        for (text, framing, keepAlive) in [("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,  Chunked ,\r\n\r\n", BodyFraming.chunked, true),
                                           ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", .untilClose, false),
                                           ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: x-a, Close\r\n\r\n", .length(3), false),
                                           ("HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: KEEP-ALIVE\r\n\r\n", .length(3), true)] {
            let b = Array(text.utf8)
            guard case .complete(let h, _) = b.withUnsafeBytes({ HTTPResponseParser().parse($0, requestMethod: "POST") }) else {
                return XCTFail(text)
            }
            XCTAssertEqual(h.framing, framing, text)
            XCTAssertEqual(h.keepAlive, keepAlive, text)
        }
    }
}
