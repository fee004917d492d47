import XCTest
import PortcullisCore
import PortcullisHTTP
import PortcullisPipeline
@testable import PortcullisProxy

/// The client's response head: each kept provider field as `Name: value` whatever white space
/// the provider put around the value (copied in one piece when it is spelled so already),
/// hop-by-hop and framing fields replaced by the gateway's own.
final class ResponseRelayTests: XCTestCase {
    /// The client's head for the provider head `text` (a POST's answer on a keep-alive
    /// HTTP/1.1 connection); nil when `text` does not parse.
    func relayed(_ text: String, requestID: String? = nil, source: ResponseHeaderSource? = nil) -> String? {
        let bytes = Array(text.utf8)
        guard case .complete(let h, _) = bytes.withUnsafeBytes({ HTTPResponseParser().parse($0, requestMethod: "POST") }) else {
            return nil
        }
        var relay = ResponseRelay()
        let out = ByteBuffer()
        relay.head(h, request: RequestFacts(method: "POST", minorVersion: 1, keepAlive: true, requestID: requestID.map { RequestID($0) }),
                   identity: [], extra: [], source: source, into: out)
        return String(decoding: out.readable, as: UTF8.self)
    }

    func testProviderFieldsAreRelayedAsNameColonSpaceValue() throws {
        let provider = "HTTP/1.1 200 OK\r\nX-A: b\r\nX-C:d\r\nX-E:\te\r\nX-F:   g  \r\nX-H:  \r\nConnection: keep-alive, X-Drop\r\n"
            + "X-Drop: 1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"
        let text = try XCTUnwrap(relayed(provider, requestID: "rid"))
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
            guard let got = relayed(text, requestID: "rid") else { return XCTFail(text) }
            let want = "HTTP/1.1 200 OK\r\n" + lines.compactMap(\.1).map { $0 + "\r\n" }.joined() + "content-length: 2\r\nx-request-id: rid\r\n\r\n"
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
        XCTAssertEqual(relayed(provider, source: Lines()), "HTTP/1.1 200 OK\r\nopenai-version: 2020-10-01\r\n"
            + "x-ratelimitless: y\r\ncontent-length: 2\r\nx-ratelimit-limit-requests: 3\r\n\r\n")
        XCTAssertEqual(relayed(provider), "HTTP/1.1 200 OK\r\nX-RateLimit-Limit-Requests: 10000\r\n"
            + "openai-version: 2020-10-01\r\nx-ratelimit-remaining-tokens: 29999990\r\nx-ratelimitless: y\r\ncontent-length: 2\r\n\r\n")
    }

    /// What the provider's `Connection` lists is dropped in any case or underscore spelling;
    /// `keep-alive` there (what most providers send) drops nothing else.
    func testConnectionListedFieldsAreDropped() throws {
        let provider = "HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nConnection: , X_Internal\r\nX-Internal: 1\r\nx_internal: 2\r\n"
            + "X-Internal-Not: 3\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\n"
        XCTAssertEqual(relayed(provider), "HTTP/1.1 200 OK\r\nX-Internal-Not: 3\r\ncontent-length: 2\r\n\r\n")
    }
}
