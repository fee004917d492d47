/// Builds answers in Anthropic's Messages wire format (see shared/fixtures/anthropic-*), for
/// requests to `…/v1/messages`: the same scripted knobs as the OpenAI endpoint.
enum AnthropicWire {
    /// One SSE event of the Messages API.
    static func ev(_ type: String, _ data: String) -> String { "event: \(type)\ndata: \(data)\n\n" }

    static func message(id: String, model: String, tokens: Int, prompt: Int) -> String {
        var text = ""
        for i in 0..<tokens { text += OpenAIWire.token(i) }
        return "{\"id\":\"\(id)\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"\(model)\",\"content\":[{\"type\":\"text\",\"text\":\"\(text)\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":\(prompt),\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":\(tokens)}}"
    }

    /// A tool call answer: input `{"gate":"north"}`.
    static func toolMessage(id: String, model: String, tool: String, prompt: Int) -> String {
        "{\"id\":\"\(id)\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"\(model)\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_fake\",\"name\":\"\(tool)\",\"input\":{\"gate\":\"north\"}}],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":\(prompt),\"output_tokens\":12}}"
    }

    /// The events of a streamed tool call (the input arrives as two `input_json_delta`s).
    struct ToolStream: FakeEventStream {
        let id: String, model: String, tool: String, prompt: Int
        var count: Int { 7 }
        func event(_ i: Int) -> String {
            switch i {
            case 0: return AnthropicWire.ev("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"\(id)\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"\(model)\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":\(prompt),\"output_tokens\":1}}}")
            case 1: return AnthropicWire.ev("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_fake\",\"name\":\"\(tool)\",\"input\":{}}}")
            case 2: return AnthropicWire.ev("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"gate\\\":\"}}")
            case 3: return AnthropicWire.ev("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"north\\\"}\"}}")
            case 4: return AnthropicWire.ev("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
            case 5: return AnthropicWire.ev("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":12}}")
            default: return AnthropicWire.ev("message_stop", "{\"type\":\"message_stop\"}")
            }
        }
    }

    static func error(status: Int) -> String {
        let (type, message) = switch status {
        case 400: ("invalid_request_error", "The fake provider was asked to reject this request.")
        case 401: ("authentication_error", "invalid x-api-key")
        case 429: ("rate_limit_error", "Number of requests has exceeded your rate limit.")
        case 529: ("overloaded_error", "Overloaded")
        default: ("api_error", "The fake provider failed as asked.")
        }
        return "{\"type\":\"error\",\"error\":{\"type\":\"\(type)\",\"message\":\"\(message)\"}}"
    }

    /// A Messages stream, one event at a time: message_start, content_block_start, ping,
    /// text deltas…, content_block_stop, message_delta (output tokens), message_stop.
    struct EventStream: FakeEventStream {
        let id: String, model: String, tokens: Int, prompt: Int
        var count: Int { tokens + 6 }

        func event(_ i: Int) -> String {
            switch i {
            case 0: return AnthropicWire.ev("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"\(id)\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"\(model)\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":\(prompt),\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}")
            case 1: return AnthropicWire.ev("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}")
            case 2: return AnthropicWire.ev("ping", "{\"type\":\"ping\"}")
            case let k where k < 3 + tokens:
                return AnthropicWire.ev("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\(OpenAIWire.token(k - 3))\"}}")
            case 3 + tokens: return AnthropicWire.ev("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
            case 4 + tokens: return AnthropicWire.ev("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":\(tokens)}}")
            default: return AnthropicWire.ev("message_stop", "{\"type\":\"message_stop\"}")
            }
        }
    }
}

/// A streamed answer the fake sends event by event.
protocol FakeEventStream {
    var count: Int { get }
    func event(_ i: Int) -> String
}

extension OpenAIWire.EventStream: FakeEventStream {}
