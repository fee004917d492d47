import XCTest
import PortcullisJSON
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import PortcullisServer

/// The access log's two formats and the outcome enum, without sockets.
final class AccessLogTests: XCTestCase {
    func summary() -> RequestSummary {
        var r = RequestSummary()
        r.requestID = "abc"; r.client = "10.0.0.1"; r.method = "POST"; r.path = "/v1/chat/completions"
        r.tenant = "acme \"corp\"\n"; r.user = "u1"; r.provider = "openai"; r.model = "gpt-4o"
        r.status = 200; r.bytes = 512; r.promptTokens = 12; r.completionTokens = 5
        r.ttfbNanos = 412_000; r.durationNanos = 1_250_500
        return r
    }

    func testJSONLineIsOneValidObjectWithEveryField() throws {
        let line = AccessLogFormat.line(summary(), format: .json, nowMillis: 1_795_650_000_123)
        XCTAssertTrue(line.hasSuffix("}\n"))
        XCTAssertEqual(line.filter { $0 == "\n" }.count, 1, "a tenant with a newline must not split the line")
        guard case .object(let o) = try JSONReader.parse(Array(line.dropLast().utf8)) else { return XCTFail() }
        XCTAssertEqual(o["tenant"]?.string, "acme \"corp\"\n")
        XCTAssertEqual(o["time"]?.string, "2026-11-25T23:40:00.123Z")
        XCTAssertEqual(o["outcome"]?.string, "ok")
        XCTAssertEqual(o["ttfb_ms"]?.number, 0.412)
        XCTAssertEqual(o["duration_ms"]?.number, 1.25)
        XCTAssertEqual(o["prompt_tokens"]?.number, 12)
        XCTAssertNotNil(o["alias"], "absent fields are null, not missing")
    }

    func testTextLineQuotesWhatIsNotAPlainToken() {
        let line = AccessLogFormat.line(summary(), format: .text, nowMillis: 0)
        XCTAssertTrue(line.contains(" tenant=\"acme \\\"corp\\\"\\n\" "), line)
        XCTAssertTrue(line.contains(" user=u1 ") && line.contains(" alias=- ") && line.contains(" status=200 "), line)
        XCTAssertEqual(line.filter { $0 == "\n" }.count, 1)
    }

    func testOutcomes() {
        XCTAssertTrue(RequestOutcome.classify("ok", status: 200) == (.ok, ""))
        XCTAssertTrue(RequestOutcome.classify("ok", status: 404) == (.clientError, ""))
        XCTAssertTrue(RequestOutcome.classify("local_error", status: 502) == (.gatewayError, ""))
        XCTAssertTrue(RequestOutcome.classify("rate_limited:user_requests_per_minute", status: 429) == (.rateLimited, "user_requests_per_minute"))
        XCTAssertTrue(RequestOutcome.classify("upstream_connect_failed", status: 502) == (.upstreamError, "connect_failed"))
        XCTAssertTrue(RequestOutcome.classify("stream_error_reset", status: 502) == (.streamError, "reset"))
        XCTAssertTrue(RequestOutcome.classify("no_healthy_target", status: 503) == (.upstreamError, "breakers_open"))
        for (i, o) in RequestOutcome.allCases.enumerated() { XCTAssertEqual(RequestOutcome.index(o), i) }
    }

    func testHistogramIsCumulative() {
        var h = LatencyHistogram()
        h.observe(nanos: 500_000)          // 0.5 ms
        h.observe(nanos: 2_000_000_000)    // 2 s
        var out = ""
        h.render("x", into: &out)
        XCTAssertTrue(out.contains("x_bucket{le=\"0.001\"} 1\n"))
        XCTAssertTrue(out.contains("x_bucket{le=\"2.5\"} 2\n"))
        XCTAssertTrue(out.contains("x_bucket{le=\"+Inf\"} 2\nx_sum 2.0005\nx_count 2\n"), out)
    }

    /// Tenants whose ids are canonically equivalent Strings but different bytes are two tenants
    /// in the metrics too: two labels, two token series.
    func testTenantsAreToldApartByTheirBytes() {
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        let labels = TenantLabels(max: 2)
        XCTAssertTrue(labels.admit(composed))
        XCTAssertTrue(labels.admit(decomposed), "its own label, not the other's")
        XCTAssertFalse(labels.admit("third"), "max_tenants reached")
        XCTAssertTrue(labels.admit(composed))
        var tokens: [MetricsShard.TokenKey: Int] = [:]
        tokens[.init(tenant: composed, model: "m"), default: 0] += 1
        tokens[.init(tenant: decomposed, model: "m"), default: 0] += 1
        tokens[.init(tenant: composed, model: "m"), default: 0] += 1
        XCTAssertEqual(tokens.count, 2)
        XCTAssertEqual(tokens[.init(tenant: composed, model: "m")], 2)
    }
}

/// The access-log writer sleeps until a worker queues something, and what is queued reaches the
/// output: after an idle spell, and when lines are queued while it is writing or going to sleep.
final class AccessLogWriterTests: XCTestCase {
    func testQueuedLinesArriveAfterIdleSpellsAndRaces() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]) }
        let writer = AccessLogWriter(fd: fds[1], capacity: 1 << 20)
        var received: [UInt8] = []
        func readUntil(_ count: Int) -> Bool {
            let deadline = Date().addingTimeInterval(5)
            var buf = [UInt8](repeating: 0, count: 4096)
            while received.count < count && Date() < deadline {
                var p = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 100) > 0 else { continue }
                let n = read(fds[0], &buf, buf.count)
                if n > 0 { received += buf[0..<n] }
            }
            return received.count >= count
        }
        var expected = 0
        for i in 0..<200 {
            let line = Array("line \(i)\n".utf8)
            XCTAssertTrue(line.withUnsafeBytes { writer.enqueue($0) })
            expected += line.count
            if i % 50 == 0 { usleep(30_000) }                  // the writer has gone to sleep
            else if i % 7 == 0 { XCTAssertTrue(readUntil(expected), "line \(i) never arrived") }
        }
        XCTAssertTrue(readUntil(expected))
        XCTAssertEqual(String(decoding: received, as: UTF8.self), (0..<200).map { "line \($0)\n" }.joined())
    }
}
