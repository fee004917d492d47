import XCTest
import PortcullisHTTP
import PortcullisJSON
import PortcullisCore
import PortcullisTestSupport
@testable import PortcullisAdapters

/// OpenAI ⇄ Anthropic translation against the shared wire-format fixtures.
final class AnthropicTests: XCTestCase {
    func fixture(_ name: String) throws -> [UInt8] {
        try XCTUnwrap(FileReader.bytes(URLLessPath.fixtures + "/" + name), "fixture \(name) not found in \(URLLessPath.fixtures)")
    }

    func json(_ b: [UInt8]) throws -> JSONValue { try JSONReader.parse(b) }

    func testRequestMatchesTheFixture() throws {
        let out = try AnthropicRequest.translate(try fixture("openai-chat-request.json"), model: "claude-sonnet-4-5", defaultMaxTokens: 4096).get()
        let expected = try json(try fixture("anthropic-messages-request.json"))
        guard case .object(let got) = try json(out), case .object(let want) = expected else { return XCTFail() }
        XCTAssertEqual(Set(got.keys), Set(want.keys))
        for k in want.keys { XCTAssertEqual(got[k], want[k], k) }
    }

    /// Found by the fuzzer: a provider's usage or index number beyond Int's range trapped the
    /// Double → Int conversion and took the gateway down. Such numbers now count as absent.
    func testHugeNumbersFromTheProviderDoNotTrap() throws {
        var tr = AnthropicStreamTranslator(created: 1, includeUsage: true)
        let start = #"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":1e300,"output_tokens":-5}}}"#
        XCTAssertFalse(tr.translate(data: Array(start.utf8)).isEmpty)
        let block = #"{"type":"content_block_start","index":1e400,"content_block":{"type":"tool_use","id":"t","name":"f"}}"#
        XCTAssertTrue(tr.translate(data: Array(block.utf8)).isEmpty)
        let delta = #"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":99999999999999999999}}"#
        _ = tr.translate(data: Array(delta.utf8))
        XCTAssertEqual(AnthropicResponse.int(.numberText("12")), 12)
        XCTAssertEqual(AnthropicResponse.int(.numberText("1.5")), 0)
        if case .success(let out) = AnthropicResponse.translate(Array(#"{"id":"m","type":"message","role":"assistant","model":"c","content":[],"stop_reason":"end_turn","usage":{"input_tokens":1e20,"output_tokens":1}}"#.utf8), created: 1) {
            XCTAssertNotNil(try? JSONReader.parse(out))
        }
    }

    func testRequestRules() throws {
        func tr(_ s: String) -> Result<[UInt8], TranslationError> {
            AnthropicRequest.translate(Array(s.utf8), model: "c", defaultMaxTokens: 99)
        }
        let merged = try json(try tr("""
        {"model":"x","messages":[{"role":"developer","content":"A"},{"role":"system","content":[{"type":"text","text":"B"}]},
         {"role":"user","content":"1"},{"role":"user","content":"2"},{"role":"assistant","content":"3"}],
         "stop":"END","user":"u-7","temperature":0.5,"stream_options":{"include_usage":true}}
        """).get()).objectValue
        XCTAssertEqual(merged?["system"], .string("A\n\nB"))
        XCTAssertEqual(merged?["max_tokens"], .numberText("99"))
        XCTAssertEqual(merged?["stop_sequences"], .array([.string("END")]))
        XCTAssertEqual(merged?["metadata"]?.objectValue?["user_id"], .string("u-7"))
        XCTAssertEqual(merged?["temperature"], .numberText("0.5"))
        guard case .array(let msgs)? = merged?["messages"] else { return XCTFail() }
        XCTAssertEqual(msgs.count, 2)
        XCTAssertEqual(msgs[0].objectValue?["content"], .string("1\n\n2"))
        for bad in ["{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}",
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}",
                    "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"http://x\"}}]}]}",
                    "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}",
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"functions\":[{}]}",
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"wat\":1}", "{\"messages\":[]}", "[1]"] {
            guard case .failure = tr(bad) else { return XCTFail("accepted \(bad)") }
        }
    }

    func testImagesAndToolsInTheRequest() throws {
        let req = """
        {"model":"x","tools":[{"type":"function","function":{"name":"open_gate","description":"Opens it","parameters":{"type":"object","properties":{"gate":{"type":"string"}}}}}],
         "tool_choice":"required",
         "messages":[
          {"role":"user","content":[{"type":"text","text":"Look: "},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},{"type":"image_url","image_url":{"url":"https://example.com/g.jpg"}}]},
          {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"open_gate","arguments":"{\\"gate\\":\\"north\\"}"}}]},
          {"role":"tool","tool_call_id":"call_1","content":"opened"},
          {"role":"user","content":"thanks"}]}
        """
        let out = try json(try AnthropicRequest.translate(Array(req.utf8), model: "c", defaultMaxTokens: 10).get()).objectValue
        XCTAssertEqual(out?["tool_choice"], .obj([("type", .string("any"))]))
        guard case .array(let tools)? = out?["tools"], let t = tools.first?.objectValue else { return XCTFail() }
        XCTAssertEqual(t["name"], .string("open_gate"))
        XCTAssertEqual(t["input_schema"]?.objectValue?["type"], .string("object"))
        guard case .array(let msgs)? = out?["messages"] else { return XCTFail() }
        XCTAssertEqual(msgs.map { $0.objectValue?["role"]?.string }, ["user", "assistant", "user"])
        guard case .array(let first)? = msgs[0].objectValue?["content"] else { return XCTFail() }
        XCTAssertEqual(first.map { $0.objectValue?["type"]?.string }, ["text", "image", "image"])
        XCTAssertEqual(first[1].objectValue?["source"]?.objectValue?["media_type"], .string("image/png"))
        XCTAssertEqual(first[2].objectValue?["source"]?.objectValue?["type"], .string("url"))
        guard case .array(let call)? = msgs[1].objectValue?["content"], let use = call.first?.objectValue else { return XCTFail() }
        XCTAssertEqual(use["type"], .string("tool_use"))
        XCTAssertEqual(use["input"]?.objectValue?["gate"], .string("north"))
        guard case .array(let last)? = msgs[2].objectValue?["content"] else { return XCTFail() }
        XCTAssertEqual(last.map { $0.objectValue?["type"]?.string }, ["tool_result", "text"])
        XCTAssertEqual(last[0].objectValue?["tool_use_id"], .string("call_1"))
    }

    func testMessageBecomesAChatCompletion() throws {
        let out = try json(try AnthropicResponse.translate(try fixture("anthropic-message.json"), created: 1764000000).get()).objectValue
        XCTAssertEqual(out?["object"], .string("chat.completion"))
        let choice = out?["choices"].flatMap { if case .array(let a) = $0 { a.first?.objectValue } else { nil } }
        XCTAssertEqual(choice?["message"]?.objectValue?["content"], .string("The gate is open."))
        XCTAssertEqual(choice?["finish_reason"], .string("stop"))
        let usage = out?["usage"]?.objectValue
        XCTAssertEqual(usage?["prompt_tokens"], .numberText("19"))
        XCTAssertEqual(usage?["completion_tokens"], .numberText("5"))
        XCTAssertEqual(usage?["total_tokens"], .numberText("24"))
    }

    func testStreamTranslatesEventByEventWithMergedUsage() throws {
        let sse = try fixture("anthropic-messages-stream.sse")
        for (includeUsage, step) in [(false, Int.max), (true, Int.max), (false, 1), (true, 1)] {
            var tr = AnthropicStreamTranslator(created: 1, includeUsage: includeUsage)
            var decoder = SSEDecoder()
            var out: [UInt8] = []
            forEachSlice(of: sse, step: step) {     // whole, and in 1-byte slices
                _ = decoder.feed($0) { ev in if let d = SSEDecoder.data(of: ev) { out += tr.translate(data: d) } }
            }
            let events = String(decoding: out, as: UTF8.self).components(separatedBy: "\n\n").filter { !$0.isEmpty }
            XCTAssertEqual(events.last, "data: [DONE]")
            var text = "", finish: JSONValue = .null, usage: JSONObject?
            for e in events.dropLast() {
                guard case .object(let c) = try json(Array(e.dropFirst(6).utf8)) else { return XCTFail(e) }
                XCTAssertEqual(c["object"], .string("chat.completion.chunk"))
                if case .array(let choices)? = c["choices"], let ch = choices.first?.objectValue {
                    text += ch["delta"]?.objectValue?["content"]?.string ?? ""
                    if ch["finish_reason"] != .null { finish = ch["finish_reason"] ?? .null }
                }
                if let u = c["usage"]?.objectValue { usage = u }
            }
            XCTAssertEqual(text, "The gate is open.")
            XCTAssertEqual(finish, .string("stop"))
            XCTAssertEqual(tr.inputTokens, 19)
            XCTAssertEqual(tr.outputTokens, 5)
            if includeUsage {
                XCTAssertEqual(usage?["prompt_tokens"], .numberText("19"))
                XCTAssertEqual(usage?["completion_tokens"], .numberText("5"))
                XCTAssertEqual(usage?["total_tokens"], .numberText("24"))
            } else {
                XCTAssertNil(usage)
            }
        }
    }

    func testStreamErrorBecomesAnErrorEvent() throws {
        let sse = try fixture("anthropic-messages-stream-overloaded.sse")
        var tr = AnthropicStreamTranslator(created: 1, includeUsage: false)
        var decoder = SSEDecoder()
        var out: [UInt8] = []
        _ = sse.withUnsafeBytes { decoder.feed($0) { ev in if let d = SSEDecoder.data(of: ev) { out += tr.translate(data: d) } } }
        let text = String(decoding: out, as: UTF8.self)
        XCTAssertTrue(text.contains("event: error\ndata: {\"error\":"), text)
        XCTAssertFalse(text.contains("[DONE]"))
        XCTAssertTrue(tr.finished)
    }

    func testStopReasons() {
        XCTAssertEqual(AnthropicResponse.finishReason("end_turn"), .string("stop"))
        XCTAssertEqual(AnthropicResponse.finishReason("stop_sequence"), .string("stop"))
        XCTAssertEqual(AnthropicResponse.finishReason("max_tokens"), .string("length"))
        XCTAssertEqual(AnthropicResponse.finishReason("tool_use"), .string("tool_calls"))
        XCTAssertEqual(AnthropicResponse.finishReason(nil), .null)
        let msg = Array(#"{"id":"m","type":"message","model":"c","content":[{"type":"text","text":"cut"}],"stop_reason":"max_tokens","usage":{"input_tokens":1,"output_tokens":2}}"#.utf8)
        let out = try? JSONReader.parse(AnthropicResponse.translate(msg, created: 1).get())
        guard case .array(let choices)? = out?.objectValue?["choices"] else { return XCTFail() }
        XCTAssertEqual(choices.first?.objectValue?["finish_reason"], .string("length"))
    }

    func testWriterRoundTrips() throws {
        let docs = ["{\"a\":[1,2.50,-3e2,true,null],\"b\":\"q\\\"\\\\\\n\\u0001é\"}", "[]", "{}"]
        for d in docs {
            let v = try JSONReader.parse(Array(d.utf8))
            XCTAssertEqual(try JSONReader.parse(JSONWriter.bytes(v)), v, d)
        }
    }
}

/// Where the wire-format fixtures are: `Tests/Fixtures/wire` (copied from the shared samples, so
/// a fresh clone runs these tests instead of skipping them).
enum URLLessPath {
    static var fixtures: String {
        var p = #filePath
        for _ in 0..<2 { if let i = p.lastIndex(of: "/") { p = String(p[..<i]) } }
        return p + "/Fixtures/wire"
    }
}

/// Tool calls in answers: JSON and streams (fed in 1-byte slices too).
final class AnthropicToolAnswerTests: XCTestCase {
    func testJSONToolUseBecomesToolCalls() throws {
        let msg = """
        {"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"tool_use","id":"toolu_1","name":"open_gate","input":{"gate":"north"}}],
         "stop_reason":"tool_use","usage":{"input_tokens":7,"output_tokens":3}}
        """
        let out = try JSONReader.parse(try AnthropicResponse.translate(Array(msg.utf8), created: 1).get()).objectValue
        guard case .array(let choices)? = out?["choices"], let c = choices.first?.objectValue else { return XCTFail() }
        XCTAssertEqual(c["finish_reason"], .string("tool_calls"))
        let m = c["message"]?.objectValue
        XCTAssertEqual(m?["content"], .null)
        guard case .array(let calls)? = m?["tool_calls"], let call = calls.first?.objectValue else { return XCTFail() }
        XCTAssertEqual(call["id"], .string("toolu_1"))
        XCTAssertEqual(call["function"]?.objectValue?["name"], .string("open_gate"))
        XCTAssertEqual(call["function"]?.objectValue?["arguments"], .string("{\"gate\":\"north\"}"))
    }

    func testStreamedToolUseBecomesToolCallDeltas() throws {
        let sse = """
        event: message_start
        data: {"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":9,"output_tokens":1}}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_9","name":"open_gate","input":{}}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\\"gate\\":"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\\"north\\"}"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":0}

        event: message_delta
        data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":12}}

        event: message_stop
        data: {"type":"message_stop"}


        """
        for step in [1, 7, 100_000] {
            var tr = AnthropicStreamTranslator(created: 1, includeUsage: false)
            var decoder = SSEDecoder()
            var out: [UInt8] = []
            forEachSlice(of: Array(sse.utf8), step: step) {
                _ = decoder.feed($0) { ev in if let d = SSEDecoder.data(of: ev) { out += tr.translate(data: d) } }
            }
            var args = "", name: JSONValue = .null, finish: JSONValue = .null
            for e in String(decoding: out, as: UTF8.self).components(separatedBy: "\n\n") where e.hasPrefix("data: {") {
                guard case .array(let choices)? = try JSONReader.parse(Array(e.dropFirst(6).utf8)).objectValue?["choices"],
                      let ch = choices.first?.objectValue else { continue }
                if case .array(let calls)? = ch["delta"]?.objectValue?["tool_calls"], let f = calls.first?.objectValue?["function"]?.objectValue {
                    if let n = f["name"], n != .null { name = n }
                    args += f["arguments"]?.string ?? ""
                }
                if ch["finish_reason"] != .null, let f = ch["finish_reason"] { finish = f }
            }
            XCTAssertEqual(name, .string("open_gate"), "step \(step)")
            XCTAssertEqual(args, "{\"gate\":\"north\"}", "step \(step)")
            XCTAssertEqual(finish, .string("tool_calls"), "step \(step)")
            XCTAssertEqual(tr.outputTokens, 12)
        }
    }
}
