import PortcullisCore
import PortcullisHTTP
import PortcullisConfig
import PortcullisAdapters
import PortcullisPipeline
import PortcullisRouter
import PortcullisJSON

/// How one attempt speaks to a provider of a given kind: the upstream request it sends (path,
/// the credential and any other headers the kind needs, body) and, for a provider that does not
/// speak OpenAI's wire format, the translation of its answer. One implementation per
/// `ProviderKind`; stateless (the per-attempt state is the returned transform).
protocol ProviderAdapter {
    /// The attempt's body is `ctx.body(for: target)`; an adapter reads it only to translate it.
    func request(_ ctx: RequestContext, route: RouteConfiguration, provider: ProviderConfiguration,
                 target: ModelTarget?) -> Result<AdaptedRequest, AdapterRefusal>
}

/// One attempt's request, as the adapter built it.
struct AdaptedRequest {
    var path: String
    /// The provider credential's line (`authorization` or `x-api-key`; empty: none), the
    /// provider's own prebuilt bytes.
    var credential: [UInt8]
    /// Another header line the kind needs (`anthropic-version`), or empty.
    var extra: [UInt8]
    /// The body the kind sends (a translation); nil: the attempt's body (`ctx.body(for:)`) as it
    /// is, not read, so a routed body is not rendered before the coordinator writes it.
    var body: [UInt8]?
    /// Translates the answer back to OpenAI's format (nil: forwarded as it comes).
    var transform: AnthropicResponseTransform?
}

/// Why an attempt cannot be made to this provider (the next candidate is tried).
enum AdapterRefusal: Error {
    /// The request cannot be expressed in the provider's API: the client's 400.
    case untranslatable(String)
    /// `api_key_env` names an unset variable.
    case missingCredential(env: String)
}

enum ProviderAdapters {
    static let openAI = OpenAIAdapter()
    static let anthropic = AnthropicAdapter()

    static func adapter(for kind: ProviderKind) -> ProviderAdapter {
        switch kind {
        case .openai: openAI
        case .anthropic: anthropic
        }
    }
}

extension ProviderConfiguration {
    /// The provider's key as its header line (`credentialLine`, built at load; empty when the
    /// provider needs none); refused when `api_key_env` names an unset variable. (`api_key_file`
    /// is read at load time: a missing file is a config error, so its key is always there.)
    func credential() -> Result<[UInt8], AdapterRefusal> {
        if apiKey == nil, let envName = apiKeyEnv { return .failure(.missingCredential(env: envName)) }
        return .success(credentialLine)
    }
}

/// OpenAI and every OpenAI-compatible API (vLLM, Ollama, Groq, Together, …): the request goes as
/// the client (and the router) shaped it, with the key in `Authorization: Bearer`.
struct OpenAIAdapter: ProviderAdapter {
    func request(_ ctx: RequestContext, route: RouteConfiguration, provider p: ProviderConfiguration,
                 target: ModelTarget?) -> Result<AdaptedRequest, AdapterRefusal> {
        p.credential().map {
            AdaptedRequest(path: route.upstreamPath ?? ctx.target, credential: $0, extra: [], body: nil, transform: nil)
        }
    }
}

/// Anthropic's Messages API, with the key in `x-api-key`. An OpenAI request is translated (and
/// its answer translated back); an Anthropic-SDK client's own `/v1/messages` request goes as it
/// is (its `anthropic-version` / `anthropic-beta` included; a default version otherwise).
struct AnthropicAdapter: ProviderAdapter {
    func request(_ ctx: RequestContext, route: RouteConfiguration, provider p: ProviderConfiguration,
                 target t: ModelTarget?) -> Result<AdaptedRequest, AdapterRefusal> {
        let credential: [UInt8]
        switch p.credential() {
        case .success(let c): credential = c
        case .failure(let refusal): return .failure(refusal)
        }
        if ctx.callsAnthropicAPI {
            let version = ctx.head.first("anthropic-version") == nil ? AnthropicResponseTransform.versionLine : []
            return .success(AdaptedRequest(path: route.upstreamPath ?? ctx.target, credential: credential, extra: version,
                                           body: nil, transform: nil))
        }
        switch AnthropicRequest.translateRequest(ctx.body(for: t), model: t?.model, defaultMaxTokens: p.defaultMaxTokens) {
        case .success(let tr):
            return .success(AdaptedRequest(path: AnthropicResponseTransform.path, credential: credential,
                                           extra: AnthropicResponseTransform.versionLine, body: tr.body,
                                           transform: AnthropicResponseTransform(includeUsage: tr.includeUsage)))
        case .failure(let e):
            return .failure(.untranslatable(e.message))
        }
    }
}

/// The per-attempt state of translating an Anthropic answer back to OpenAI's format.
final class AnthropicResponseTransform {
    static let versionLine = Array("anthropic-version: 2023-06-01\r\n".utf8)
    static let path = "/v1/messages"

    var translator: AnthropicStreamTranslator
    var decoder = SSEDecoder()
    /// The answer is an event stream being translated event by event.
    var streaming = false

    init(includeUsage: Bool) {
        translator = AnthropicStreamTranslator(created: Int(WallClock.nowMillis() / 1000), includeUsage: includeUsage)
    }

    /// Translates the stream bytes that arrived; `emit` gets OpenAI events (whole events only),
    /// and whether they are one content chunk of the fast path (`lastWasDeltaChunk`).
    func feed(_ bytes: UnsafeRawBufferPointer, emit: ([UInt8], _ contentChunk: Bool) -> Void) {
        _ = decoder.feed(bytes) { translate($0, emit) }
    }

    /// The stream ended: an event still held by the decoder is translated.
    func finish(emit: ([UInt8], _ contentChunk: Bool) -> Void) {
        decoder.finish { translate($0, emit) }
    }

    private func translate(_ event: UnsafeRawBufferPointer, _ emit: ([UInt8], Bool) -> Void) {
        let out = SSEDecoder.withData(of: event) { data in data.map { translator.translate(data: $0) } ?? [] }
        if !out.isEmpty { emit(out, translator.lastWasDeltaChunk) }
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
