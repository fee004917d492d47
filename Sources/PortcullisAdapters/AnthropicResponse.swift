import PortcullisJSON

/// Anthropic Messages → OpenAI chat completions (response side), JSON and streams. Pure.
public enum AnthropicResponse {
    /// `end_turn`→`stop`, `max_tokens`→`length`, `tool_use`→`tool_calls`, `stop_sequence`→`stop`.
    public static func finishReason(_ stop: String?) -> JSONValue {
        switch stop {
        case "end_turn"?, "stop_sequence"?: .string("stop")
        case "max_tokens"?: .string("length")
        case "tool_use"?: .string("tool_calls")
        case let s?: .string(s)
        case nil: .null
        }
    }

    static func usage(input: Int, output: Int) -> JSONValue {
        .obj([("prompt_tokens", .int(input)), ("completion_tokens", .int(output)), ("total_tokens", .int(input + output))])
    }

    /// A provider's count as an `Int`: 0 unless it is a whole number from 0 to 10^15 (a huge or
    /// non-finite number from a provider must never trap the conversion: found by fuzzing).
    static func int(_ v: JSONValue?) -> Int { index(v, limit: 1e15) ?? 0 }

    /// A whole number in 0...limit, else nil.
    static func index(_ v: JSONValue?, limit: Double = 1_000_000) -> Int? {
        guard let d = v?.number, d.isFinite, d >= 0, d <= limit, d == d.rounded() else { return nil }
        return Int(d)
    }

    /// A non-streamed Messages answer as a `chat.completion`.
    public static func translate(_ body: [UInt8], created: Int) -> Result<[UInt8], TranslationError> {
        guard case .object(let m)? = try? JSONReader.parse(body), m["type"]?.string == "message" else {
            return .failure(TranslationError("The provider's answer is not a Messages response."))
        }
        var text = ""
        var calls: [JSONValue] = []
        if case .array(let blocks)? = m["content"] {
            for b in blocks {
                guard case .object(let o) = b else { continue }
                switch o["type"]?.string {
                case "text"?: text += o["text"]?.string ?? ""
                case "tool_use"?:
                    calls.append(.obj([("id", o["id"] ?? .null), ("type", .string("function")),
                                       ("function", .obj([("name", o["name"] ?? .null),
                                                          ("arguments", .string(String(decoding: JSONWriter.bytes(o["input"] ?? .obj([])), as: UTF8.self)))]))]))
                default: continue
                }
            }
        }
        var message: [(String, JSONValue)] = [("role", .string("assistant")),
                                              ("content", calls.isEmpty || !text.isEmpty ? .string(text) : .null), ("refusal", .null)]
        if !calls.isEmpty { message.append(("tool_calls", .array(calls))) }
        let u = m["usage"]?.objectValue
        let out: JSONValue = .obj([
            ("id", .string("chatcmpl-" + (m["id"]?.string ?? "anthropic"))),
            ("object", .string("chat.completion")),
            ("created", .int(created)),
            ("model", m["model"] ?? .null),
            ("choices", .array([.obj([
                ("index", .int(0)),
                ("message", .obj(message)),
                ("logprobs", .null),
                ("finish_reason", finishReason(m["stop_reason"]?.string)),
            ])])),
            ("usage", usage(input: int(u?["input_tokens"]), output: int(u?["output_tokens"]))),
        ])
        return .success(JSONWriter.bytes(out))
    }
}

/// Translates a Messages event stream into `chat.completion.chunk` events, one event at a time
/// (fed each complete SSE event's `data`; nothing is buffered across events). Usage is merged —
/// input tokens from `message_start`, output tokens from `message_delta` — not last-wins.
public struct AnthropicStreamTranslator: Sendable {
    let created: Int
    /// Emit the final usage chunk (the client asked for `stream_options.include_usage`).
    let includeUsage: Bool
    var id = "chatcmpl-anthropic"
    var model: JSONValue = .null
    public private(set) var inputTokens = 0
    public private(set) var outputTokens = 0
    var stopReason: String?
    public private(set) var finished = false
    /// Anthropic content-block index → OpenAI tool-call index, for tool_use blocks.
    var toolIndex: [Int: Int] = [:]

    public init(created: Int, includeUsage: Bool) { self.created = created; self.includeUsage = includeUsage }

    /// The OpenAI SSE bytes for one Anthropic event's `data` (possibly none).
    public mutating func translate(data: [UInt8]) -> [UInt8] {
        guard case .object(let e)? = try? JSONReader.parse(data), let type = e["type"]?.string else { return [] }
        switch type {
        case "message_start":
            let m = e["message"]?.objectValue
            if let i = m?["id"]?.string { id = "chatcmpl-" + i }
            model = m?["model"] ?? .null
            let u = m?["usage"]?.objectValue
            inputTokens = AnthropicResponse.int(u?["input_tokens"])
            outputTokens = AnthropicResponse.int(u?["output_tokens"])
            return chunk(delta: .obj([("role", .string("assistant")), ("content", .string(""))]), finish: .null)
        case "content_block_start":
            guard let b = e["content_block"]?.objectValue, b["type"]?.string == "tool_use",
                  let block = AnthropicResponse.index(e["index"]) else { return [] }
            let k = toolIndex.count
            toolIndex[block] = k
            return chunk(delta: .obj([("tool_calls", .array([.obj([
                ("index", .int(k)), ("id", b["id"] ?? .null), ("type", .string("function")),
                ("function", .obj([("name", b["name"] ?? .null), ("arguments", .string(""))])),
            ])]))]), finish: .null)
        case "content_block_delta":
            let d = e["delta"]?.objectValue
            switch d?["type"]?.string {
            case "text_delta"?:
                guard let t = d?["text"]?.string else { return [] }
                return chunk(delta: .obj([("content", .string(t))]), finish: .null)
            case "input_json_delta"?:
                guard let block = AnthropicResponse.index(e["index"]), let k = toolIndex[block],
                      let part = d?["partial_json"]?.string else { return [] }
                return chunk(delta: .obj([("tool_calls", .array([.obj([("index", .int(k)), ("function", .obj([("arguments", .string(part))]))])]))]),
                             finish: .null)
            default:
                return []
            }
        case "message_delta":
            if let s = e["delta"]?.objectValue?["stop_reason"]?.string { stopReason = s }
            if let o = e["usage"]?.objectValue?["output_tokens"] { outputTokens = AnthropicResponse.int(o) }
            return []
        case "message_stop":
            finished = true
            var out = chunk(delta: .obj([]), finish: AnthropicResponse.finishReason(stopReason))
            if includeUsage {
                out += event(.obj(base() + [("choices", .array([])),
                                            ("usage", AnthropicResponse.usage(input: inputTokens, output: outputTokens))]))
            }
            out += Array("data: [DONE]\n\n".utf8)
            return out
        case "error":
            finished = true
            let err = e["error"]?.objectValue
            let body: JSONValue = .obj([("error", .obj([
                ("message", .string(err?["message"]?.string ?? "The provider failed.")),
                ("type", .string(err?["type"]?.string == "overloaded_error" ? "server_error" : "api_error")),
                ("param", .null),
                ("code", .string(err?["type"]?.string ?? "provider_error")),
            ]))])
            return Array("event: error\ndata: ".utf8) + JSONWriter.bytes(body) + Array("\n\n".utf8)
        default:
            return []   // ping, content_block_stop: nothing for an OpenAI client
        }
    }

    func base() -> [(String, JSONValue)] {
        [("id", .string(id)), ("object", .string("chat.completion.chunk")), ("created", .int(created)), ("model", model)]
    }

    func chunk(delta: JSONValue, finish: JSONValue) -> [UInt8] {
        var members = base()
        members.append(("choices", .array([.obj([("index", .int(0)), ("delta", delta), ("logprobs", .null), ("finish_reason", finish)])])))
        if includeUsage { members.append(("usage", .null)) }
        return event(.obj(members))
    }

    func event(_ v: JSONValue) -> [UInt8] { Array("data: ".utf8) + JSONWriter.bytes(v) + Array("\n\n".utf8) }
}
