import XCTest
import PortcullisCore
import PortcullisHTTP
import PortcullisPipeline
@testable import PortcullisProxy

/// The client's response head: each kept provider field as `Name: value` whatever white space
/// the provider put around the value (copied in one piece when it is spelled so already),
/// hop-by-hop and framing fields replaced by the gateway's own.
final class ResponseRelayTests: XCTestCase {
    func testProviderFieldsAreRelayedAsNameColonSpaceValue() throws {
        let provider = "HTTP/1.1 200 OK\r\nX-A: b\r\nX-C:d\r\nX-E:\te\r\nX-F:   g  \r\nX-H:  \r\nConnection: keep-alive, X-Drop\r\n"
            + "X-Drop: 1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"
        let bytes = Array(provider.utf8)
        guard case .complete(let h, _) = bytes.withUnsafeBytes({ HTTPResponseParser().parse($0, requestMethod: "POST") }) else {
            return XCTFail("parse")
        }
        var relay = ResponseRelay()
        let out = ByteBuffer()
        relay.head(h, request: RequestFacts(method: "POST", minorVersion: 1, keepAlive: true, requestID: RequestID("rid")),
                   identity: [], extra: [], into: out)
        let text = String(decoding: out.readable, as: UTF8.self)
        XCTAssertEqual(text, "HTTP/1.1 200 OK\r\nX-A: b\r\nX-C: d\r\nX-E: e\r\nX-F: g\r\nX-H: \r\n"
            + "Content-Type: application/json\r\ncontent-length: 2\r\nx-request-id: rid\r\n\r\n")
    }

    /// A provider's kept lines go out in runs (adjacent `Name: value\r\n` lines copied in one
    /// piece): for heads made of every mix of plain, oddly spaced and dropped lines, the bytes
    /// are exactly the line-by-line rule's.
    func testKeptLinesInRunsAreTheLineByLineBytes() throws {
        let pool: [(String, String?)] = [("X-A: 1", "X-A: 1"), ("x-b:2", "x-b: 2"), ("X-C: three ", "X-C: three"),
                                         ("Connection: keep-alive", nil), ("X-Request-Id: theirs", nil), ("Server: cloudflare", "Server: cloudflare"),
                                         ("Keep-Alive: timeout=5", nil), ("x-d:\tv", "x-d: v"), ("x-e: ", "x-e: "),
                                         ("Set-Cookie: a=b; path=/", "Set-Cookie: a=b; path=/")]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<600 {
            let lines = (0..<Int.random(in: 1...9, using: &rng)).map { _ in pool[Int.random(in: 0..<pool.count, using: &rng)] }
            let text = "HTTP/1.1 200 OK\r\n" + lines.map { $0.0 + "\r\n" }.joined() + "Content-Length: 2\r\n\r\n"
            let bytes = Array(text.utf8)
            guard case .complete(let h, _) = bytes.withUnsafeBytes({ HTTPResponseParser().parse($0, requestMethod: "POST") }) else {
                return XCTFail(text)
            }
            var relay = ResponseRelay()
            let out = ByteBuffer()
            relay.head(h, request: RequestFacts(method: "POST", minorVersion: 1, keepAlive: true, requestID: RequestID("rid")),
                       identity: [], extra: [], into: out)
            let want = "HTTP/1.1 200 OK\r\n" + lines.compactMap(\.1).map { $0 + "\r\n" }.joined() + "content-length: 2\r\nx-request-id: rid\r\n\r\n"
            let got = String(decoding: out.readable, as: UTF8.self)
            if got != want { return XCTFail("\(text.debugDescription): \(got.debugDescription)") }
        }
    }

    /// A source of lines (the limiter's `x-ratelimit-*`) replaces the provider's fields of those
    /// names, in any case; names that only start alike stay, and without a source they all stay.
    func testASourcesLinesReplaceTheProvidersFieldsOfThoseNames() throws {
        final class Lines: ResponseHeaderSource {
            var replacedNamePrefix: StaticString { "x-ratelimit-" }
            var maxLineBytes: Int { 64 }
            func writeLines(to: UnsafeMutableRawBufferPointer) -> Int {
                let line = Array("x-ratelimit-limit-requests: 3\r\n".utf8)
                to.copyBytes(from: line)
                return line.count
            }
        }
        let provider = "HTTP/1.1 200 OK\r\nX-RateLimit-Limit-Requests: 10000\r\nopenai-version: 2020-10-01\r\n"
            + "x-ratelimit-remaining-tokens: 29999990\r\nx-ratelimitless: y\r\nContent-Length: 2\r\n\r\n"
        let bytes = Array(provider.utf8)
        guard case .complete(let h, _) = bytes.withUnsafeBytes({ HTTPResponseParser().parse($0, requestMethod: "POST") }) else {
            return XCTFail("parse")
        }
        let facts = RequestFacts(method: "POST", minorVersion: 1, keepAlive: true, requestID: nil)
        var relay = ResponseRelay()
        let out = ByteBuffer()
        relay.head(h, request: facts, identity: [], extra: [], source: Lines(), into: out)
        XCTAssertEqual(String(decoding: out.readable, as: UTF8.self), "HTTP/1.1 200 OK\r\nopenai-version: 2020-10-01\r\n"
            + "x-ratelimitless: y\r\ncontent-length: 2\r\nx-ratelimit-limit-requests: 3\r\n\r\n")
        var plain = ResponseRelay()
        let out2 = ByteBuffer()
        plain.head(h, request: facts, identity: [], extra: [], into: out2)
        XCTAssertEqual(String(decoding: out2.readable, as: UTF8.self), "HTTP/1.1 200 OK\r\nX-RateLimit-Limit-Requests: 10000\r\n"
            + "openai-version: 2020-10-01\r\nx-ratelimit-remaining-tokens: 29999990\r\nx-ratelimitless: y\r\ncontent-length: 2\r\n\r\n")
    }

    /// What the provider's `Connection` lists is dropped in any case or underscore spelling;
    /// `keep-alive` there (what most providers send) drops nothing else.
    func testConnectionListedFieldsAreDropped() throws {
        let provider = "HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nConnection: , X_Internal\r\nX-Internal: 1\r\nx_internal: 2\r\n"
            + "X-Internal-Not: 3\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\n"
        let bytes = Array(provider.utf8)
        guard case .complete(let h, _) = bytes.withUnsafeBytes({ HTTPResponseParser().parse($0, requestMethod: "POST") }) else {
            return XCTFail("parse")
        }
        var relay = ResponseRelay()
        let out = ByteBuffer()
        relay.head(h, request: RequestFacts(method: "POST", minorVersion: 1, keepAlive: true, requestID: nil),
                   identity: [], extra: [], into: out)
        XCTAssertEqual(String(decoding: out.readable, as: UTF8.self), "HTTP/1.1 200 OK\r\nX-Internal-Not: 3\r\ncontent-length: 2\r\n\r\n")
    }
}
