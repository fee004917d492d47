import PortcullisCore
import PortcullisHTTP
import PortcullisConfig
import PortcullisAdapters

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
