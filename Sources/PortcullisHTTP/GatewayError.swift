import PortcullisCore

/// Every error the gateway answers a client with, and the one place that maps each to an HTTP
/// status, message and HTTP-level headers. How it is written for the client (OpenAI's JSON
/// shape, Anthropic's) is the business of the layer that knows the client's API
/// (`GatewayError.openAIBody` in PortcullisPipeline, `ClientAPIErrors` in PortcullisProxy).
public enum GatewayError: Error, Equatable, Sendable {
    case badRequest(String)
    /// No usable credentials (no or non-Bearer `Authorization`).
    case unauthorized(String)
    /// Credentials present but refused (bad signature, expired, wrong issuer/audience, unknown key).
    case invalidToken(String)
    case forbidden(String)
    case notFound(String)
    /// An unknown model alias (OpenAI's `model_not_found`).
    case modelNotFound(String)
    /// `allow` is the value of the `Allow` header (the methods the resource serves).
    case methodNotAllowed(String, allow: String)
    case requestTimeout
    case payloadTooLarge(limit: Int)
    case uriTooLong
    case expectationFailed(String)
    case headersTooLarge
    case tooManyRequests(String, retryAfterSeconds: Int)
    case internalError(String)
    case notImplemented(String)
    case upstreamConnectFailed(String)
    case upstreamBadResponse(String)
    case upstreamTimeout(String)
    case versionNotSupported
    case overloaded(String)

    public var status: Int {
        switch self {
        case .badRequest: 400
        case .unauthorized, .invalidToken: 401
        case .forbidden: 403
        case .notFound, .modelNotFound: 404
        case .methodNotAllowed: 405
        case .requestTimeout: 408
        case .payloadTooLarge: 413
        case .uriTooLong: 414
        case .expectationFailed: 417
        case .headersTooLarge: 431
        case .tooManyRequests: 429
        case .internalError: 500
        case .notImplemented: 501
        case .upstreamConnectFailed, .upstreamBadResponse: 502
        case .overloaded: 503
        case .upstreamTimeout: 504
        case .versionNotSupported: 505
        }
    }

    public var message: String {
        switch self {
        case .badRequest(let m), .unauthorized(let m), .invalidToken(let m), .forbidden(let m), .notFound(let m),
             .modelNotFound(let m),
             .methodNotAllowed(let m, _), .expectationFailed(let m), .internalError(let m),
             .notImplemented(let m), .upstreamConnectFailed(let m), .upstreamBadResponse(let m),
             .upstreamTimeout(let m), .overloaded(let m):
            m
        case .tooManyRequests(let m, _): m
        case .requestTimeout: "The request was not received in time."
        case .payloadTooLarge(let limit): "The request body exceeds the limit of \(limit) bytes."
        case .uriTooLong: "The request target is too long."
        case .headersTooLarge: "The request header section is too large."
        case .versionNotSupported: "Only HTTP/1.0 and HTTP/1.1 are supported."
        }
    }

    /// Whether the connection must be closed after answering (framing can't be trusted).
    public var closesConnection: Bool {
        switch self {
        case .badRequest, .requestTimeout, .payloadTooLarge, .uriTooLong, .headersTooLarge,
             .versionNotSupported, .notImplemented, .expectationFailed: true
        default: false
        }
    }

    /// Extra response headers this error requires.
    public var extraHeaders: [(String, String)] {
        switch self {
        case .unauthorized: [("www-authenticate", "Bearer")]
        case .invalidToken: [("www-authenticate", "Bearer error=\"invalid_token\"")]
        case .tooManyRequests(_, let s): [("retry-after", String(s))]
        case .methodNotAllowed(_, let allow): [("allow", allow)]
        default: []
        }
    }
}
