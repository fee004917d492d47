import XCTest
import PortcullisTestSupport
@testable import PortcullisHTTP

/// Resumed head parsing: a head fed a byte at a time gives the same answer as one whole, and
/// the work done stays linear in the head's size.
final class IncrementalHeadTests: XCTestCase {
    func feedByteByByte(_ bytes: [UInt8], parser: HTTPRequestParser) -> (HeadParseResult<HTTPRequestHead>, Int) {
        var state = HeadScanState()
        var last: HeadParseResult<HTTPRequestHead> = .incomplete
        for n in 1...bytes.count {
            last = bytes.withUnsafeBytes { parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n]), resuming: &state) }
            if case .incomplete = last { continue }
            break
        }
        return (last, state.bytesExamined)
    }

    func bigHead(_ size: Int) -> [UInt8] {
        var s = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        var i = 0
        while s.utf8.count < size - 40 { s += "X-Filler-\(i): \(String(repeating: "v", count: 90))\r\n"; i += 1 }
        return Array((s + "Content-Length: 0\r\n\r\n").utf8)
    }

    func testSixteenKilobyteHeadByteByByteIsLinear() throws {
        let head = bigHead(16_000)
        let parser = HTTPRequestParser(limits: HTTPParserLimits(maxHeaderBytes: 32_768, maxHeaderCount: 512))
        let (result, examined) = feedByteByByte(head, parser: parser)
        guard case .complete(let h, let consumed) = result else { return XCTFail("\(result)") }
        XCTAssertEqual(consumed, head.count)
        XCTAssertEqual(h.first("x-filler-3")?.count, 90)
        // Each byte is scanned for LF once and each header line lexed once: ≤ 2× the head.
        XCTAssertLessThanOrEqual(examined, 2 * head.count, "head parsing is not linear: \(examined) bytes examined for \(head.count)")
        // The same head in one piece gives the same head.
        guard case .complete(let whole, consumed) = head.withUnsafeBytes({ parser.parse($0) }) else { return XCTFail() }
        XCTAssertEqual(whole.headers, h.headers)
    }

    func testEverySplitGivesTheSameAnswer() {
        let inputs = ["\r\nGET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A:  1 \r\n\r\nNEXT", "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
                      "GET / HTTP/1.1\r\nHost : x\r\n\r\n", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"]
        let parser = HTTPRequestParser()
        for text in inputs {
            assertEverySplitGivesTheWholeAnswer(Array(text.utf8), parser, text.debugDescription)
        }
    }

    /// `bytes` cut in two at every point, the second read resuming the first's state: the answer
    /// is the one for `bytes` whole.
    func assertEverySplitGivesTheWholeAnswer(_ bytes: [UInt8], _ parser: HTTPRequestParser, _ context: String,
                                             file: StaticString = #filePath, line: UInt = #line) {
        let whole = bytes.withUnsafeBytes { parser.parse($0) }
        for split in 1..<bytes.count {
            var state = HeadScanState()
            var r = bytes.withUnsafeBytes { parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<split]), resuming: &state) }
            if case .incomplete = r { r = bytes.withUnsafeBytes { parser.parse($0, resuming: &state) } }
            XCTAssertEqual(describe(r), describe(whole), "\(context) split at \(split)", file: file, line: line)
        }
    }

    /// A request line at the limit exactly, its CR and LF in separate reads, is accepted as it
    /// is whole; one byte longer is refused (414) either way. (The fuzz target's finding: the
    /// pending CR counted against the limit, so such a line was refused only when split there.)
    func testARequestLineAtTheLimitSplitBeforeItsLF() {
        let parser = HTTPRequestParser(limits: HTTPParserLimits(maxHeaderBytes: 1024, maxRequestLineBytes: 64))
        for extra in [0, 1] {
            let line = "GET /" + String(repeating: "a", count: 64 - 14 + extra) + " HTTP/1.1"   // 64 bytes (+ extra)
            XCTAssertEqual(line.utf8.count, 64 + extra)
            let bytes = Array((line + "\r\nHost: x\r\n\r\n").utf8)
            let whole = bytes.withUnsafeBytes { parser.parse($0) }
            assertEverySplitGivesTheWholeAnswer(bytes, parser, "line of \(line.utf8.count) bytes")
            let (stepped, _) = feedByteByByte(bytes, parser: parser)
            XCTAssertEqual(describe(stepped), describe(whole), "line of \(line.utf8.count) bytes, byte by byte")
            if extra == 0 {
                guard case .complete = whole else { return XCTFail("a line at the limit: \(whole)") }
            } else {
                guard case .failure(let e) = whole else { return XCTFail("a line over the limit: \(whole)") }
                XCTAssertEqual(e.status, 414)
            }
        }
        // A line that has passed the limit (65 bytes and more) is refused without waiting for its
        // end, whatever its last byte; 64 bytes and a CR still wait for the LF.
        for (tail, refused) in [("a", true), ("a\r", true), ("\r\r", true), ("\r", false)] {
            let bytes = Array(("GET /" + String(repeating: "a", count: 59) + tail).utf8)   // 64 bytes and the tail
            let r = bytes.withUnsafeBytes { parser.parse($0) }
            if refused {
                guard case .failure(let e) = r, e.status == 414 else { return XCTFail("\(bytes.count) bytes ending \(tail.debugDescription): \(r)") }
            } else {
                guard case .incomplete = r else { return XCTFail("64 bytes and a CR: \(r)") }
            }
        }
    }

    func describe(_ r: HeadParseResult<HTTPRequestHead>) -> String {
        switch r {
        case .incomplete: "incomplete"
        case .failure(let e): "failure \(e)"
        case .complete(let h, let c): "complete \(h.method) \(h.target) \(h.headers.map { "\($0.name)=\($0.value)" }) \(c)"
        }
    }
}
