import PortcullisCore
import PortcullisHTTP
import PortcullisJSON

/// OpenAI's error format — the API the gateway's clients speak by default:
/// `{"error":{"message":…,"type":…,"param":null,"code":…}}`.
extension GatewayError {
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

    /// The OpenAI-format body.
    public var jsonBody: String {
        String(decoding: JSONWriter.bytes(.obj([("error", .obj([("message", .string(message)), ("type", .string(type)),
                                                                ("param", .null), ("code", .string(code))]))])), as: UTF8.self)
    }

}
