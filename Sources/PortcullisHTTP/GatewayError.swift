import PortcullisCore

/// Every error the gateway answers a client with, and the one place that maps each to an HTTP
/// status and an OpenAI-style body `{"error":{"message":…,"type":…,"param":null,"code":…}}`.
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

    /// OpenAI's `error.type` vocabulary.
    public var type: String {
        switch self {
        case .unauthorized, .invalidToken: "authentication_error"
        case .forbidden: "permission_error"
        case .tooManyRequests: "rate_limit_error"
        case .notFound: "not_found_error"
        case .internalError, .upstreamConnectFailed, .upstreamBadResponse, .upstreamTimeout, .overloaded:
            "server_error"
        default: "invalid_request_error"
        }
    }

    public var code: String {
        switch self {
        case .badRequest: "bad_request"
        case .unauthorized: "missing_token"
        case .invalidToken: "invalid_token"
        case .forbidden: "forbidden"
        case .notFound: "not_found"
        case .modelNotFound: "model_not_found"
        case .methodNotAllowed: "method_not_allowed"
        case .requestTimeout: "request_timeout"
        case .payloadTooLarge: "request_too_large"
        case .uriTooLong: "uri_too_long"
        case .expectationFailed: "expectation_failed"
        case .headersTooLarge: "headers_too_large"
        case .tooManyRequests: "rate_limit_exceeded"
        case .internalError: "internal_error"
        case .notImplemented: "not_implemented"
        case .upstreamConnectFailed: "upstream_connect_failed"
        case .upstreamBadResponse: "upstream_bad_response"
        case .upstreamTimeout: "upstream_timeout"
        case .versionNotSupported: "http_version_not_supported"
        case .overloaded: "overloaded"
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

    public var jsonBody: String {
        "{\"error\":{\"message\":\(JSONText.quote(message)),\"type\":\"\(type)\",\"param\":null,\"code\":\"\(code)\"}}"
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
