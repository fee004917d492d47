import PortcullisCore
import PortcullisHTTP
import PortcullisConfig
import PortcullisAdapters
import PortcullisJSON

/// How one attempt speaks to its provider's kind: the request it sends and, for a provider
/// that does not speak OpenAI's wire format, the response translation back to it. `openai`
/// (OpenAI, vLLM, Ollama, Groq, …) needs nothing; `anthropic` translates both ways.
/// One per attempt; loop thread only.
final class AnthropicResponseTransform {
    static let version = HTTPHeader(name: "anthropic-version", value: "2023-06-01")
    static let path = "/v1/messages"
    static let defaultMaxTokens = 4096

    var translator: AnthropicStreamTranslator
    var decoder = SSEDecoder()
    /// The answer is an event stream being translated event by event.
    var streaming = false

    init(includeUsage: Bool) {
        translator = AnthropicStreamTranslator(created: Int(WallClock.nowMillis() / 1000), includeUsage: includeUsage)
    }

    /// Translates the stream bytes that arrived; `emit` gets OpenAI events (whole events only).
    func feed(_ bytes: UnsafeRawBufferPointer, emit: ([UInt8]) -> Void) {
        _ = decoder.feed(bytes) { event in
            guard let data = SSEDecoder.data(of: event) else { return }
            let out = translator.translate(data: data)
            if !out.isEmpty { emit(out) }
        }
    }

    func finish(emit: ([UInt8]) -> Void) {
        decoder.finish { event in
            guard let data = SSEDecoder.data(of: event) else { return }
            let out = translator.translate(data: data)
            if !out.isEmpty { emit(out) }
        }
    }

    /// An Anthropic error body (`{"type":"error","error":{"type":…,"message":…}}`) in OpenAI's
    /// shape; a body that is not one gets a generic message.
    static func translateError(_ body: [UInt8], status: Int) -> [UInt8] {
        var type = "api_error", message = "The provider answered \(status)."
        if case .object(let o)? = try? JSONReader.parse(body), let e = o["error"]?.objectValue {
            type = e["type"]?.string ?? type
            message = e["message"]?.string ?? message
        }
        let openAIType: String = switch type {
        case "rate_limit_error": "rate_limit_error"
        case "authentication_error": "authentication_error"
        case "permission_error": "permission_error"
        case "not_found_error": "not_found_error"
        case "invalid_request_error", "request_too_large": "invalid_request_error"
        default: "server_error"
        }
        let code = type == "rate_limit_error" ? "rate_limit_exceeded" : type
        return JSONWriter.bytes(.obj([("error", .obj([("message", .string(message)), ("type", .string(openAIType)),
                                                      ("param", .null), ("code", .string(code))]))]))
    }

    /// A whole JSON answer, translated (nil: not a Messages answer; it is forwarded as it came).
    static func translateWhole(_ body: [UInt8]) -> [UInt8]? {
        guard case .success(let out) = AnthropicResponse.translate(body, created: Int(WallClock.nowMillis() / 1000)) else { return nil }
        return out
    }
}

extension HTTPResponseHead {
    /// The answer is an event stream.
    var isEventStream: Bool { fields.contains { $0.known == .contentType && valueHasPrefix($0, "text/event-stream") } }
}

/// Errors the gateway itself answers, in the shape of the API the client called: Anthropic's
/// (`{"type":"error","error":{"type":…,"message":…}}`) on `/v1/messages`, OpenAI's elsewhere.
public enum ClientAPIErrors {
    public static func anthropicBody(_ e: GatewayError) -> [UInt8] {
        let type: String = switch e.status {
        case 400, 405, 414, 417, 431: "invalid_request_error"
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 429: "rate_limit_error"
        case 503: "overloaded_error"
        default: "api_error"
        }
        return JSONWriter.bytes(.obj([("type", .string("error")),
                                      ("error", .obj([("type", .string(type)), ("message", .string(e.message))]))]))
    }
}
