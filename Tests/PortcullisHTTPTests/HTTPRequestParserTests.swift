import XCTest
@testable import PortcullisHTTP

/// Request-head parsing on byte buffers, no sockets. Every case is fed whole and as every
/// prefix (byte-by-byte delivery): a prefix must parse as `incomplete` or fail the same way.
final class HTTPRequestParserTests: XCTestCase {
    let parser = HTTPRequestParser(limits: HTTPParserLimits(maxHeaderBytes: 16384))

    func parse(_ s: String, _ p: HTTPRequestParser? = nil) -> HeadParseResult<HTTPRequestHead> {
        Array(s.utf8).withUnsafeBytes { (p ?? parser).parse($0) }
    }

    func head(_ s: String, file: StaticString = #filePath, line: UInt = #line) -> (HTTPRequestHead, Int)? {
        guard case .complete(let h, let c) = parse(s) else {
            XCTFail("expected a complete head, got \(parse(s))", file: file, line: line); return nil
        }
        return (h, c)
    }

    func expectError(_ s: String, status: Int, file: StaticString = #filePath, line: UInt = #line) {
        guard case .failure(let e) = parse(s) else {
            return XCTFail("expected \(status) for \(s.debugDescription), got \(parse(s))", file: file, line: line)
        }
        XCTAssertEqual(e.status, status, "\(s.debugDescription): \(e.message)", file: file, line: line)
        // Byte-by-byte: no prefix may be accepted, and a prefix's failure must be the same status.
        let bytes = Array(s.utf8)
        for n in 0..<bytes.count {
            let r = Array(bytes[0..<n]).withUnsafeBytes { parser.parse($0) }
            switch r {
            case .incomplete: continue
            case .failure(let pe): XCTAssertEqual(pe.status, status, "prefix \(n) of \(s.debugDescription)", file: file, line: line)
            case .complete: XCTFail("prefix \(n) of \(s.debugDescription) parsed as complete", file: file, line: line)
            }
        }
    }

    /// A control byte anywhere in a long value (checked eight bytes at a time) is refused; a
    /// tab, obs-text (≥ 0x80) and every other visible byte are accepted.
    func testControlBytesAreFoundAtEveryPositionOfALongValue() {
        let value = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        for bad: UInt8 in [0x00, 0x01, 0x08, 0x0B, 0x1F, 0x7F] {
            for at in 0..<value.count {
                var v = value
                v[at] = bad
                let bytes = Array("GET / HTTP/1.1\r\nHost: a\r\nX-Long: ".utf8) + v + Array("\r\n\r\n".utf8)
                guard case .failure(let e) = bytes.withUnsafeBytes({ parser.parse($0) }) else {
                    return XCTFail("accepted byte \(bad) at \(at)")
                }
                XCTAssertEqual(e.status, 400)
            }
        }
        for good: UInt8 in [0x09, 0x20, 0x7E, 0x80, 0xC3, 0xFF] {
            for at in 1..<(value.count - 1) {
                var v = value
                v[at] = good
                let bytes = Array("GET / HTTP/1.1\r\nHost: a\r\nX-Long: ".utf8) + v + Array("\r\n\r\n".utf8)
                guard case .complete = bytes.withUnsafeBytes({ parser.parse($0) }) else {
                    return XCTFail("refused byte \(good) at \(at)")
                }
            }
        }
    }

    func testKnownHeaderNamesClassifyBackToThemselves() {
        var named = 0
        for raw in 0...UInt8.max {
            guard let k = KnownHeader(rawValue: raw) else { continue }
            guard let name = k.lowercasedName else { continue }
            XCTAssertEqual(KnownHeader.classify(name), k, name)
            XCTAssertEqual(KnownHeader.classify(name.uppercased().lowercased()), k)
            named += 1
        }
        XCTAssertGreaterThan(named, 25)
        guard case .complete(let h, _) = parse("GET / HTTP/1.1\r\nHOST: a\r\nContent-Type: x\r\nX-Other: y\r\n\r\n") else { return XCTFail() }
        XCTAssertEqual(h.headers.map(\.name), ["host", "content-type", "x-other"])
    }

    /// A connection's repeated target comes back as the same String (no new one built); any
    /// other target, of any length, is its own; common methods are literals, others as sent.
    func testRepeatedTargetsAndCommonMethods() {
        var st = HeadScanState()
        func next(_ line: String) -> HTTPRequestHead? {
            defer { st.nextHead() }
            guard case .complete(let h, _) = Array("\(line) HTTP/1.1\r\nHost: a\r\n\r\n".utf8).withUnsafeBytes({ parser.parse($0, resuming: &st) })
            else { return nil }
            return h
        }
        let bits = { (s: String) in unsafeBitCast(s, to: (UInt64, UInt64).self) }
        guard let a = next("POST /v1/chat/completions"), let b = next("POST /v1/chat/completions"),
              let c = next("POST /v1/chat/completionz"), let d = next("PATCH /v1/chat/completions?x=1"),
              let e = next("QUERY /v1/chat/completions?x=1"), let f = next("get /x") else { return XCTFail() }
        XCTAssertTrue(bits(a.target) == bits(b.target))
        XCTAssertEqual([a.target, c.target, d.target, d.path, e.target], ["/v1/chat/completions", "/v1/chat/completionz",
                        "/v1/chat/completions?x=1", "/v1/chat/completions", "/v1/chat/completions?x=1"])
        XCTAssertEqual([a.method, d.method, e.method, f.method], ["POST", "PATCH", "QUERY", "get"])
    }

    /// A connection's previous head is refilled for its next request only when nothing else
    /// holds it: a head somebody keeps never changes under them.
    func testAHeadIsReusedOnlyWhenNobodyHoldsIt() {
        var st = HeadScanState()
        func next(_ text: String) -> HTTPRequestHead? {
            defer { st.nextHead() }
            guard case .complete(let h, _) = Array(text.utf8).withUnsafeBytes({ parser.parse($0, resuming: &st) }) else { return nil }
            return h
        }
        guard let kept = next("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-One: 1\r\n\r\n") else { return XCTFail() }
        let keptID = ObjectIdentifier(kept)
        guard let second = next("GET /b?q HTTP/1.0\r\nX-Two: 2\r\n\r\n") else { return XCTFail() }
        XCTAssertNotEqual(ObjectIdentifier(second), keptID)            // `kept` is still held
        XCTAssertEqual([kept.method, kept.target, kept.path], ["POST", "/a", "/a"])
        XCTAssertEqual(kept.headers.map(\.name), ["host", "content-length", "x-one"])
        XCTAssertEqual(kept.framing, .length(3))
        XCTAssertEqual(kept.first(.contentLength), "3")
        var heads: [ObjectIdentifier] = []
        for (i, text) in ["PUT /c HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"].enumerated() {
            guard let h = next(text) else { return XCTFail() }
            heads.append(ObjectIdentifier(h))
            if i == 0 {
                XCTAssertEqual([h.method, h.target, h.path], ["PUT", "/c", "/c"])
                XCTAssertEqual(h.headers.map(\.name), ["host", "transfer-encoding"])
                XCTAssertEqual(h.framing, .chunked); XCTAssertTrue(h.keepAlive); XCTAssertEqual(h.minorVersion, 1)
            } else {
                XCTAssertEqual(h.headers.map(\.value), ["d", "close"])
                XCTAssertEqual(h.framing, .none); XCTAssertFalse(h.keepAlive)
                XCTAssertEqual(String(decoding: h.raw, as: UTF8.self), "Host: d\r\nConnection: close\r\n")
            }
        }
        XCTAssertNotEqual(heads[0], ObjectIdentifier(second))          // `second` is still held too
        XCTAssertEqual(heads[0], heads[1])                             // refilled: nobody held it
        // A head of more than 4 KiB of header bytes is not kept for the next request (an idle
        // connection holds no large head); the one after it is kept again.
        let big = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "b", count: 5000) + "\r\n\r\n"
        XCTAssertNotNil(next(big))
        XCTAssertNil(st.spare)
        XCTAssertNotNil(next("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        let keptSpare = st.spare.map(ObjectIdentifier.init)
        XCTAssertNotNil(keptSpare)
        XCTAssertEqual(next("GET /z HTTP/1.1\r\nHost: b\r\n\r\n")?.target, "/z")
        XCTAssertEqual(st.spare.map(ObjectIdentifier.init), keptSpare)
    }

    /// `HeadLexer.lowercase` folds eight bytes at a time; it must agree with the byte fold for
    /// every byte value at every position of 1–19-byte names (words and tails), the rest of the
    /// name upper-case letters, and never touch a byte past `count`.
    func testWordAtATimeLowercaseAgreesWithTheByteFold() {
        for n in 1...19 {
            for at in 0..<n {
                for c in 0...UInt8.max {
                    var bytes = [UInt8](repeating: UInt8(ascii: "Q"), count: n + 1)
                    bytes[at] = c
                    bytes.withUnsafeMutableBufferPointer { b in HeadLexer.lowercase(b.baseAddress!, count: n) }
                    var want = [UInt8](repeating: UInt8(ascii: "q"), count: n) + [UInt8(ascii: "Q")]
                    want[at] = HeadLexer.lower(c)
                    if bytes != want { XCTFail("length \(n), byte \(c) at \(at): \(bytes)"); return }
                }
            }
        }
    }

    /// The parsers classify names a word at a time (`classifyToken`); it must agree with the
    /// byte-by-byte `classifyIgnoringCase` on every token: each known name in mixed case, each
    /// with one byte changed to every other tchar, and the tchar table against RFC 9110's list.
    func testTokenClassificationAgreesWithTheByteCompare() {
        let tchars = Array("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        for c in 0...UInt8.max { XCTAssertEqual(HeadLexer.isTchar(c), tchars.contains(c), "byte \(c)") }
        func agree(_ name: [UInt8]) {
            name.withUnsafeBytes { XCTAssertEqual(KnownHeader.classifyToken($0), KnownHeader.classifyIgnoringCase($0), String(decoding: name, as: UTF8.self)) }
        }
        func upper(_ c: UInt8) -> UInt8 { (c >= 97 && c <= 122) ? c & ~0x20 : c }
        var checked = 0
        for raw in 0...UInt8.max {
            guard let name = KnownHeader(rawValue: raw)?.lowercasedName else { continue }
            let lower = Array(name.utf8)
            let mixed = lower.enumerated().map { $0.offset % 2 == 0 ? upper($0.element) : $0.element }
            for n in [lower, mixed, lower.map(upper)] {
                agree(n)
                XCTAssertEqual(n.withUnsafeBytes { KnownHeader.classifyToken($0) }, KnownHeader(rawValue: raw))
                for i in n.indices {
                    for c in tchars where c != n[i] {
                        var m = n; m[i] = c; agree(m); checked += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(checked, 10_000)
        agree(Array("proxy-x".utf8)); agree(Array("PROXY-Foo".utf8)); agree(Array("x".utf8))
    }

    /// `HeadLexer.field` recognises a known name up to the colon without checking each byte is a
    /// tchar; it must answer exactly as a byte-by-byte check would: every known name, in mixed
    /// case, with each byte replaced by each of the 256 values (CR, controls, `:`, space, bytes
    /// ≥ 0x80 included), accepted with the same classification or refused with the same error.
    /// What a byte-by-byte reading of RFC 9110's token grammar says of a header line's name:
    /// refused (and why), or accepted with its classification and length.
    private func nameOracle(_ line: [UInt8]) -> String {
        var i = 0
        if line[0] == HeadLexer.SP || line[0] == HeadLexer.HT { return "fail obsFold" }
        while i < line.count && HeadLexer.isTchar(line[i]) { i += 1 }
        if i == line.count { return "fail noColon" }
        if line[i] != HeadLexer.COLON { return line[i] == HeadLexer.SP || line[i] == HeadLexer.HT ? "fail whitespaceBeforeColon" : "fail badName" }
        if i == 0 { return "fail badName" }
        let k = Array(line[0..<i]).withUnsafeBytes { KnownHeader.classifyIgnoringCase($0) }
        return "ok \(k.rawValue) \(i)"
    }

    /// What `HeadLexer.field` says of the same line, in `nameOracle`'s terms.
    private func lexedName(_ line: [UInt8]) -> String {
        line.withUnsafeBytes { b in
            switch HeadLexer.field(b, 0, b.count, base: 0) {
            case .success(let f): return "ok \(f.known.rawValue) \(f.nameEnd)"
            case .failure(let e): return "fail \(e.kind)"
            }
        }
    }

    func testKnownNamesAreRecognisedOnlyWhenEveryByteIsATchar() {
        var checked = 0
        for raw in 0...UInt8.max {
            guard let name = KnownHeader(rawValue: raw)?.lowercasedName else { continue }
            let mixed = Array(name.utf8).enumerated().map { $0.offset % 2 == 0 && $0.element >= 97 ? $0.element - 32 : $0.element }
            for at in mixed.indices {
                for c in 0...UInt8.max where c != HeadLexer.LF {
                    var line = mixed
                    line[at] = c
                    line += Array(": v".utf8)
                    XCTAssertEqual(lexedName(line), nameOracle(line), "\(name) with byte \(c) at \(at)")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 80_000)
    }

    /// Other names of 4 bytes or more made of letters, digits and `-` are checked a word at a
    /// time (`HeadLexer.isPlainName`): every byte value at every position of such names of 1–20
    /// bytes (both sides of word boundaries, the overlapping last word, the two halves of a
    /// short one) gives exactly the byte-by-byte answer, and so does each bit pattern's word test.
    func testOtherNamesAreCheckedAtEveryPosition() {
        let plain = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-".utf8)
        for c in 0...UInt8.max {
            for at in 0..<8 {
                var w = [UInt8](repeating: UInt8(ascii: "m"), count: 8)
                w[at] = c
                let word = w.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                XCTAssertEqual(HeadLexer.isNameWord(word), plain.contains(c), "byte \(c) at \(at)")
            }
        }
        for n in 1...20 {
            let name = (0..<n).map { plain[($0 * 7 + n) % plain.count] }
            for at in 0..<n {
                for c in 0...UInt8.max where c != HeadLexer.LF {
                    var line = name
                    line[at] = c
                    line += Array(": v".utf8)
                    let got = lexedName(line)
                    if got != nameOracle(line) { return XCTFail("length \(n), byte \(c) at \(at): \(got), want \(nameOracle(line))") }
                }
            }
        }
    }

    /// Header values are checked sixteen, then eight bytes at a time: every byte value at every
    /// position of values of 1–40 bytes (both sides of each block boundary) is refused or kept
    /// exactly as the byte-by-byte rule says (controls other than HT, and DEL, refused;
    /// obs-text kept), with the value's span unchanged.
    func testEveryValueByteIsCheckedAtEveryPosition() {
        for len in 1...40 {
            for pos in 0..<len {
                for c in 0...UInt8.max where c != HeadLexer.LF && c != HeadLexer.CR {
                    var value = Array(repeating: UInt8(ascii: "v"), count: len)
                    value[pos] = c
                    let line = Array("x-v: ".utf8) + value
                    let refused = (c < 0x20 && c != HeadLexer.HT) || c == 0x7F
                    let got = line.withUnsafeBytes { b -> String in
                        switch HeadLexer.field(b, 0, b.count, base: 0) {
                        case .success(let f): return "ok \(f.valueStart) \(f.valueEnd)"
                        case .failure(let e): return "fail \(e.kind)"
                        }
                    }
                    // A tab or space at either end is trimmed from the value, not refused.
                    var vs = 5, ve = line.count
                    while vs < ve && (line[vs] == HeadLexer.SP || line[vs] == HeadLexer.HT) { vs += 1 }
                    while ve > vs && (line[ve - 1] == HeadLexer.SP || line[ve - 1] == HeadLexer.HT) { ve -= 1 }
                    let want = refused ? "fail badValue" : "ok \(vs) \(ve)"
                    if got != want { return XCTFail("length \(len), byte \(c) at \(pos): \(got), want \(want)") }
                }
            }
        }
    }

    /// A tab (allowed, but it stops the word-at-a-time checks) before a forbidden byte: the
    /// forbidden byte is still found wherever the two sit, the last word's check included.
    func testAForbiddenByteAfterATabIsFoundAtEveryPosition() {
        for len in 2...40 {
            for tab in 0..<(len - 1) {
                for pos in (tab + 1)..<len {
                    for c: UInt8 in [0x01, 0x1F, 0x7F] {
                        var value = Array(repeating: UInt8(ascii: "v"), count: len)
                        value[tab] = HeadLexer.HT
                        value[pos] = c
                        let line = Array("x-v: v".utf8) + value + Array("v".utf8)
                        let refused = line.withUnsafeBytes { b -> Bool in
                            if case .failure = HeadLexer.field(b, 0, b.count, base: 0) { return true }
                            return false
                        }
                        if !refused { return XCTFail("length \(len), tab at \(tab), byte \(c) at \(pos) accepted") }
                    }
                }
            }
        }
    }

    /// The request target is checked eight bytes at a time: every byte value at every position
    /// of targets of 1–17 bytes (both sides of word boundaries) is refused, ends the target, or
    /// is kept, exactly as RFC 9112 §3.2 and the byte-by-byte check say.
    func testEveryTargetByteIsCheckedAtEveryPosition() {
        for len in 1...17 {
            for pos in 0..<len {
                for c in 0...UInt8.max where c != HeadLexer.LF {
                    var target = Array(repeating: UInt8(ascii: "x"), count: len)
                    target[pos] = c
                    let line = Array("GET /".utf8) + target + Array(" HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
                    let r = line.withUnsafeBytes { parser.parse($0) }
                    switch r {
                    case .complete(let h, _):
                        XCTAssertTrue(c > 0x20 && c < 0x7F, "byte \(c) at \(pos) of \(len) accepted")
                        XCTAssertEqual(h.target, "/" + String(decoding: target, as: UTF8.self))
                    case .failure(let e):
                        let want = c == 0x20 ? "Malformed HTTP version." : "Invalid character in request target."
                        XCTAssertEqual(e, .badRequest(want), "byte \(c) at \(pos) of \(len)")
                        XCTAssertTrue(c <= 0x20 || c >= 0x7F)
                    case .incomplete:
                        XCTFail("byte \(c) at \(pos) of \(len): incomplete")
                    }
                }
            }
        }
    }

    func testSimpleGet() throws {
        let (h, consumed) = try XCTUnwrap(head("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"))
        XCTAssertEqual(h.method, "GET")
        XCTAssertEqual(h.target, "/healthz")
        XCTAssertEqual(h.minorVersion, 1)
        XCTAssertEqual(h.framing, .none)
        XCTAssertTrue(h.keepAlive)
        XCTAssertEqual(consumed, 34)
    }

    func testHeadersAreLowercasedAndTrimmed() throws {
        let (h, _) = try XCTUnwrap(head("POST /v1/chat/completions HTTP/1.1\r\nHOST: x\r\nContent-Type:  application/json \t\r\nContent-Length: 2\r\n\r\n{}"))
        XCTAssertEqual(h.first("content-type"), "application/json")
        XCTAssertEqual(h.framing, .length(2))
        XCTAssertEqual(h.path, "/v1/chat/completions")
    }

    func testByteByByteIsIncompleteUntilTheBlankLine() {
        let bytes = Array("POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n".utf8)
        for n in 0..<bytes.count {
            let r = Array(bytes[0..<n]).withUnsafeBytes { parser.parse($0) }
            guard case .incomplete = r else { return XCTFail("prefix \(n): \(r)") }
        }
        guard case .complete(let h, let c) = bytes.withUnsafeBytes({ parser.parse($0) }) else { return XCTFail() }
        XCTAssertEqual(c, bytes.count)
        XCTAssertEqual(h.path, "/x")
        XCTAssertEqual(h.target, "/x?y=1")
    }

    func testPipelinedRequestsParseOneAtATime() throws {
        let two = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
        let (h1, c1) = try XCTUnwrap(head(two))
        XCTAssertEqual(h1.target, "/a")
        let rest = String(two.utf8.dropFirst(c1))!
        let (h2, c2) = try XCTUnwrap(head(rest))
        XCTAssertEqual(h2.target, "/b")
        XCTAssertEqual(c1 + c2, two.utf8.count)
    }

    func testKeepAliveRules() throws {
        XCTAssertFalse(try XCTUnwrap(head("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")).0.keepAlive)
        XCTAssertFalse(try XCTUnwrap(head("GET / HTTP/1.0\r\n\r\n")).0.keepAlive)
        XCTAssertTrue(try XCTUnwrap(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")).0.keepAlive)
    }

    func testChunkedAndExpect() throws {
        let (h, _) = try XCTUnwrap(head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"))
        XCTAssertEqual(h.framing, .chunked)
        XCTAssertTrue(h.expectContinue)
    }

    func testHTTP1xAbove1IsServedAs11() throws {
        XCTAssertEqual(try XCTUnwrap(head("GET / HTTP/1.7\r\nHost: a\r\n\r\n")).0.minorVersion, 1)
    }

    func testAbsoluteFormIsReducedToOriginForm() throws {
        XCTAssertEqual(try XCTUnwrap(head("GET http://example.com/v1/x?q HTTP/1.1\r\nHost: example.com\r\n\r\n")).0.target, "/v1/x?q")
    }

    func testLeadingEmptyLineIsIgnored() throws {
        XCTAssertEqual(try XCTUnwrap(head("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")).0.method, "GET")
    }

    // MARK: malformed requests (RFC 9112)

    func testContentLengthAndTransferEncodingTogether() {
        expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400)
    }

    func testDuplicateContentLength() {
        expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", status: 400)
        expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", status: 400)
        expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", status: 400)
    }

    func testBadContentLength() {
        expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", status: 400)
        expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n", status: 400)
        expectError("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", status: 400)
    }

    func testWhitespaceBeforeColon() {
        expectError("GET / HTTP/1.1\r\nHost : a\r\n\r\n", status: 400)
        expectError("GET / HTTP/1.1\r\nHost: a\r\nX-Y\t: b\r\n\r\n", status: 400)
    }

    func testObsFold() {
        expectError("GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n", status: 400)
    }

    func testControlCharactersInValues() {
        expectError("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\u{0}c\r\n\r\n", status: 400)
        expectError("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", status: 400)
        expectError("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\nc\r\n\r\n", status: 400)
    }

    func testBareLF() {
        expectError("GET / HTTP/1.1\nHost: a\n\n", status: 400)
    }

    func testMissingOrRepeatedHost() {
        expectError("GET / HTTP/1.1\r\n\r\n", status: 400)
        expectError("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400)
    }

    func testVersions() {
        expectError("GET / HTTP/2.0\r\nHost: a\r\n\r\n", status: 505)
        expectError("GET / HTTP/0.9\r\nHost: a\r\n\r\n", status: 505)
        expectError("GET / HTTP/3.0\r\nHost: a\r\n\r\n", status: 505)
        expectError("GET /\r\n\r\n", status: 400)           // HTTP/0.9 simple request
        expectError("GET / HTTP/1.10\r\nHost: a\r\n\r\n", status: 400)
        expectError("GET / http/1.1\r\nHost: a\r\n\r\n", status: 400)
    }

    func testMalformedRequestLines() {
        expectError("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400)
        expectError("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400)
        expectError("GET nopath HTTP/1.1\r\nHost: a\r\n\r\n", status: 400)
        expectError(": / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400)
        expectError("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", status: 400)
    }

    func testBadHeaderNames() {
        expectError("GET / HTTP/1.1\r\nHost: a\r\n: novalue\r\n\r\n", status: 400)
        expectError("GET / HTTP/1.1\r\nHost: a\r\nBad(Name): v\r\n\r\n", status: 400)
        expectError("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", status: 400)
    }

    func testTransferEncodingRules() {
        expectError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", status: 400)
        expectError("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", status: 501)
        expectError("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400)
    }

    func testUnsupportedExpectation() {
        expectError("POST / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\n", status: 417)
    }

    func testLimits() {
        let small = HTTPRequestParser(limits: HTTPParserLimits(maxHeaderBytes: 1024, maxRequestLineBytes: 256))
        let longLine = "GET /" + String(repeating: "a", count: 300) + " HTTP/1.1\r\nHost: a\r\n\r\n"
        guard case .failure(let e1) = parse(longLine, small) else { return XCTFail() }
        XCTAssertEqual(e1.status, 414)
        // A request line that never ends is refused once it passes the limit, not buffered forever.
        guard case .failure(let e2) = parse("GET /" + String(repeating: "a", count: 300), small) else { return XCTFail() }
        XCTAssertEqual(e2.status, 414)
        let bigHeaders = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "b", count: 2000) + "\r\n\r\n"
        guard case .failure(let e3) = parse(bigHeaders, small) else { return XCTFail() }
        XCTAssertEqual(e3.status, 431)
        guard case .failure(let e4) = parse("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "b", count: 2000), small) else { return XCTFail() }
        XCTAssertEqual(e4.status, 431)
    }

    func testErrorsMapToStatusesAndHeaders() {
        XCTAssertEqual(GatewayError.badRequest("Bad").message, "Bad")
        XCTAssertEqual(GatewayError.upstreamTimeout("x").status, 504)
        XCTAssertEqual(GatewayError.tooManyRequests("x", retryAfterSeconds: 3).extraHeaders.first?.1, "3")
    }
}
