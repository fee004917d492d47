import XCTest
@testable import PortcullisHTTP
import PortcullisTestSupport

/// RFC 3986 dot-segment removal and the refusals that keep a route prefix from being escaped.
final class RequestTargetTests: XCTestCase {
    func canon(_ t: String) -> String? {
        if case .success(let c) = RequestTarget.canonicalize(t) { return c.target }
        return nil
    }

    func refusal(_ t: String) -> RequestTarget.Refusal? {
        if case .failure(let r) = RequestTarget.canonicalize(t) { return r }
        return nil
    }

    func testCanonicalForms() {
        XCTAssertEqual(canon("/v1/chat/completions"), "/v1/chat/completions")
        XCTAssertEqual(canon("/v1/chat/completions?a=1&b=/../x"), "/v1/chat/completions?a=1&b=/../x")
        XCTAssertEqual(canon("/v1/./chat//completions"), "/v1/chat/completions")
        XCTAssertEqual(canon("/v1/models/../chat/completions"), "/v1/chat/completions")
        XCTAssertEqual(canon("/v1/a/.."), "/v1/")
        XCTAssertEqual(canon("/v1/a/."), "/v1/a/")
        XCTAssertEqual(canon("/v1/"), "/v1/")
        XCTAssertEqual(canon("//"), "/")
        XCTAssertEqual(canon("/"), "/")
        XCTAssertEqual(canon("/a/b/../../c?q"), "/c?q")
        XCTAssertEqual(canon("/v1/%41bc"), "/v1/%41bc")   // other escapes are left as sent
        XCTAssertEqual(canon("/v1/..a/.b"), "/v1/..a/.b")  // not dot segments
        if case .success(let c) = RequestTarget.canonicalize("/x/../v1/chat?q=1") { XCTAssertEqual(c.path, "/v1/chat") }
    }

    func testRefusals() {
        XCTAssertEqual(refusal("/v1/../../admin"), .aboveRoot)
        XCTAssertEqual(refusal("/.."), .aboveRoot)
        XCTAssertEqual(refusal("/v1/../.."), .aboveRoot)
        for enc in ["%2f", "%2F", "%5c", "%5C", "%2e", "%2E", "%00"] {
            XCTAssertEqual(refusal("/v1/\(enc)admin"), .encodedSeparator, enc)
        }
        XCTAssertEqual(refusal("/v1/%2e%2e/admin"), .encodedSeparator)
        XCTAssertEqual(refusal("/v1\\..\\admin"), .backslash)
        XCTAssertEqual(refusal("/v1/chat#frag"), .fragment)
        XCTAssertEqual(refusal("/v1/chat?x=1#frag"), .fragment)
        XCTAssertEqual(refusal("/v1/%zz"), .malformedPercentEncoding)
        XCTAssertEqual(refusal("/v1/%4"), .malformedPercentEncoding)
        XCTAssertEqual(refusal("*"), .notOriginForm)
        // In the query, separators and escapes are data.
        XCTAssertEqual(canon("/v1/chat?path=%2F..%5C"), "/v1/chat?path=%2F..%5C")
    }

    /// Whatever is accepted has no dot or empty segments: a prefix check on it cannot be escaped.
    func testAcceptedPathsAreFixedPoints() {
        let parts = ["a", ".", "..", "", "%41", "b.", ".c"]
        var rng = SeededRandom(seed: 0x2E2E)
        for _ in 0..<5000 {
            let n = Int.random(in: 1...6, using: &rng)
            let path = "/" + (0..<n).map { _ in parts.randomElement(using: &rng)! }.joined(separator: "/")
            guard case .success(let c) = RequestTarget.canonicalize(path) else { continue }
            XCTAssertEqual(canon(c.path), c.path, path)
            let segs = c.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            XCTAssertFalse(segs.dropLast().contains { $0.isEmpty || $0 == "." || $0 == ".." }, "\(path) → \(c.path)")
            XCTAssertFalse(segs.last == "." || segs.last == "..", "\(path) → \(c.path)")
        }
    }
}
