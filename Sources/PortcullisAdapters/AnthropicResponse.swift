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
