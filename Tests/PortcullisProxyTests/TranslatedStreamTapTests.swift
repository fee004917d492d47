import XCTest
import PortcullisCore
import PortcullisHTTP
import PortcullisConfig
import PortcullisPipeline
import PortcullisUpstream
import PortcullisAdapters
import PortcullisTestSupport
@testable import PortcullisRouter
@testable import PortcullisProxy

/// A translated Anthropic stream through the coordinator: the content chunks of the
/// translator's fast path are counted by the usage tap without being read (`UsageTap
/// .passContentChunk`), and the tap must read what it reads when it frames and searches every
/// translated event —
/// usage, prompt and completion counts, content events, the model — while the client gets the
/// same bytes (the usage chunk hidden when the gateway asked for it).
final class TranslatedStreamTapTests: XCTestCase {
    typealias Sink = ProxyCoordinatorTests.Sink
    typealias Starter = ProxyCoordinatorTests.Starter

    static let yaml = """
    providers:
      claude: { base_url: "http://127.0.0.1:4", kind: anthropic, api_key_env: KEY_C }
    models:
      alias:
        tiers:
          t: [{ target: claude/claude-x }]
    routes:
      - { path: /v1/chat/completions }
    """

    /// One random Messages stream's events (`event:` and `data:` lines), and its model name.
    func randomStream(_ rng: inout SeededRandom) -> [String] {
        var events: [String] = []
        func add(_ type: String, _ data: String) { events.append("event: \(type)\ndata: \(data)\n\n") }
        let texts = ["Hi", "a \\\"quoted\\\" word", "\\u00e9t\\u00e9", "line\\nbreak", "", "€ and 🙂", "\\\\"]
        let startsWithMessage = Int.random(in: 0..<8, using: &rng) != 0
        if startsWithMessage {
            add("message_start", #"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"usage":{"input_tokens":\#(Int.random(in: 1...500, using: &rng)),"output_tokens":1}}}"#)
        }
        add("content_block_start", #"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#)
        for _ in 0..<Int.random(in: 0...12, using: &rng) {
            let text = texts[Int.random(in: 0..<texts.count, using: &rng)]
            switch Int.random(in: 0..<10, using: &rng) {
            case 0: add("ping", #"{"type":"ping"}"#)
            case 1: add("content_block_delta", #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\#(text)","text":"x"}}"#)   // strict path: dropped
            case 2: add("content_block_delta", #"{"index":0 , "delta":{"text":"\#(text)","type":"text_delta"},"type":"content_block_delta"}"#)
            default: add("content_block_delta", #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\#(text)"}}"#)
            }
        }
        add("content_block_stop", #"{"type":"content_block_stop","index":0}"#)
        if Int.random(in: 0..<2, using: &rng) == 0 {
            add("content_block_start", #"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}"#)
            for part in [#"{\"a\""#, #":1}"#] where Int.random(in: 0..<4, using: &rng) != 0 {
                add("content_block_delta", #"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\#(part)"}}"#)
            }
            add("content_block_stop", #"{"type":"content_block_stop","index":1}"#)
        }
        add("message_delta", #"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":\#(Int.random(in: 1...900, using: &rng))}}"#)
        add("message_stop", #"{"type":"message_stop"}"#)
        return events
    }

    func testTheTapReadsWhatItReadsFramingEveryEvent() throws {
        var rng = SeededRandom(seed: 0x7A9_5EED)
        let config = try ConfigurationLoader.parse(Self.yaml, file: "t", environment: ["KEY_C": "sk-c"])
        var contentEvents = 0, counted = 0
        for round in 0..<400 {
            let hide = round % 2 == 1, askUsage = round % 4 >= 2 || hide   // hiding: the gateway asked for usage
            let messages = #""messages":[{"role":"user","content":"hi"}]"#
            let body = askUsage ? #"{"model":"alias",\#(messages),"stream":true,"stream_options":{"include_usage":true}}"#
                                : #"{"model":"alias",\#(messages),"stream":true}"#
            let events = randomStream(&rng)

            // Through the coordinator, the provider's bytes cut at random places.
            let sink = Sink(), starter = Starter()
            let coordinator = ProxyCoordinator(sink: sink, starter: starter, breakers: CircuitBreakers(targets: config.models.targets.count, defaults: config.models.defaults),
                                               metrics: nil, now: { 1_000 })
            let raw = Array("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n".utf8)
            guard case .complete(let head, _) = raw.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { return XCTFail("parse") }
            let ctx = RequestContext(requestID: RequestID("req-1"), head: head, body: Array(body.utf8), clientAddress: "127.0.0.1",
                                     startNanos: 0, configuration: config)
            ctx.tier = "t"
            ctx.hideStreamUsage = hide
            for m: Middleware in [RequestTargetMiddleware(), RouteMiddleware(), HeaderHygieneMiddleware(), AliasRouterMiddleware()] {
                guard case .next = m.process(ctx) else { return XCTFail("\(m.name) refused") }
            }
            coordinator.start(ctx)
            XCTAssertEqual(starter.started.map(\.provider), ["claude"], "\(sink.local.map { String(decoding: $0.body, as: UTF8.self) })")
            let h = Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            guard case .complete(let rh, _) = h.withUnsafeBytes({ HTTPResponseParser().parse($0, requestMethod: "POST") }) else { return XCTFail("head") }
            coordinator.upstreamDidReceiveHead(rh)
            let stream = Array(events.joined().utf8)
            var i = 0
            while i < stream.count {
                let j = min(stream.count, i + Int.random(in: 1...300, using: &rng))
                _ = stream[i..<j].withUnsafeBytes { coordinator.upstreamDidReceiveBody($0) }
                i = j
            }
            coordinator.upstreamDidFinish()

            // The reference: the translated stream, every event framed and read by a tap.
            var translator = AnthropicStreamTranslator(created: 0, includeUsage: askUsage)
            var translated: [UInt8] = []
            for e in events {
                let data = Array(e.split(separator: "\n")[1].dropFirst(6).utf8)
                translated += translator.translate(data: data)
                if translator.lastWasDeltaChunk { counted += 1 }
            }
            let reference = UsageTap(hide: hide)
            reference.begin(sse: true)
            var forwarded: [UInt8] = []
            translated.withUnsafeBytes { b in
                if reference.filters { reference.filter(b) { forwarded += $0 } } else { forwarded += b; reference.observe(b) }
            }
            reference.finish { forwarded += $0 }

            let tap = coordinator.tap, context = "round \(round): \(events.joined())"
            XCTAssertEqual(tap.usage, reference.usage, context)
            XCTAssertEqual(tap.promptTokens, reference.promptTokens, context)
            XCTAssertEqual(tap.completionTokens, reference.completionTokens, context)
            XCTAssertEqual(tap.contentEvents, reference.contentEvents, context)
            XCTAssertEqual(tap.model, reference.model, context)
            if askUsage { XCTAssertNotNil(tap.usage, context) }
            // What the client read, its chunked framing taken off.
            var client: [UInt8] = []
            var chunked = ChunkedDecoder()
            let out = sink.output.readable
            guard let split = out.firstRange(of: [13, 10, 13, 10]) else { return XCTFail("no head: \(context)") }
            _ = chunked.feed(UnsafeRawBufferPointer(rebasing: out[split.upperBound...])) { client += $0 }
            XCTAssertEqual(Self.undated(client), Self.undated(forwarded), context)
            contentEvents += reference.contentEvents
        }
        XCTAssertGreaterThan(counted, 1_000, "the fast path's chunks were exercised")
        XCTAssertGreaterThan(contentEvents, 1_000)
    }

    /// The bytes with each `"created":N` made `"created":0` (the two translators start at
    /// different wall-clock seconds).
    static func undated(_ b: [UInt8]) -> String {
        String(decoding: b, as: UTF8.self).replacing(/"created":\d+/, with: "\"created\":0")
    }

    /// The tap reads a chunk itself while it holds part of an event, or before it knows the
    /// stream's model.
    func testPassingStepsAsideWhenTheTapIsMidEventOrHasNoModel() {
        let tap = UsageTap(hide: false)
        XCTAssertFalse(tap.passContentChunk(), "not a stream")
        tap.begin(sse: true)
        XCTAssertFalse(tap.passContentChunk(), "no model read yet")
        Array("data: {\"model\":\"m\",\"choices\":[{\"delta\":{}}]}\n\n".utf8).withUnsafeBytes { tap.observe($0) }
        XCTAssertEqual(tap.contentEvents, 1)
        XCTAssertTrue(tap.passContentChunk())
        XCTAssertEqual(tap.contentEvents, 2)
        Array("data: {\"choices\":[{\"delta\":{}}]}\n".utf8).withUnsafeBytes { tap.observe($0) }
        XCTAssertFalse(tap.passContentChunk(), "part of an event held")
        Array("\n".utf8).withUnsafeBytes { tap.observe($0) }
        XCTAssertEqual(tap.contentEvents, 3)
        Array("data: {}\r".utf8).withUnsafeBytes { tap.observe($0) }
        XCTAssertFalse(tap.passContentChunk(), "a CR pending")
    }
}
