import PortcullisCore
import PortcullisHTTP
import PortcullisConfig
import PortcullisJSON

/// Everything the pipeline knows about one request. Created by the server connection when a
/// request's head and body are complete; owned by that connection; touched only on its loop's
/// thread. Middlewares read it and fill in their part (route, tenant, upstream headers).
public final class RequestContext {
    public let requestID: String
    public var head: HTTPRequestHead
    /// The whole request body (bounded by `server.max_body_bytes`); kept for replay on failover.
    public var body: [UInt8]
    public let clientAddress: String
    public let startNanos: UInt64
    public let configuration: GatewayConfiguration
    /// The canonical path and target (`RequestTarget`): what routing, authentication and the
    /// upstream request use. Set by `RequestTargetMiddleware`, the first stage.
    public var path: String
    public var target: String

    /// Set by `RouteMiddleware`.
    public var route: RouteConfiguration?
    public var provider: ProviderConfiguration?
    /// Header lines to send upstream (`name: value\r\n`…; besides Host/Content-Length, which
    /// the upstream client adds), written once as bytes: the request head copies them as they
    /// are. Built by `HeaderHygieneMiddleware`; later middlewares append with
    /// `appendUpstreamHeader` (values they checked: no CR, LF or NUL).
    public var upstreamHeaderLines: [UInt8] = []

    public func appendUpstreamHeader(_ name: StaticString, _ value: String) {
        // (`HeaderHygieneMiddleware` left room for the usual identity lines)
        upstreamHeaderLines.append(name)
        upstreamHeaderLines.append(": ")
        value.withUTF8Bytes { upstreamHeaderLines.append(contentsOf: $0) }
        upstreamHeaderLines.append("\r\n")
    }

    /// Verified identity (the auth issue fills these; nothing here trusts client headers).
    public var tenant: String?
    public var user: String?
    public var tier: String?
    /// Set by the alias router on alias routes: the targets to try, in order, and the body to
    /// send each. Nil on plain routes (one attempt to `provider` with `body` as received).
    public var plan: RoutePlan?
    /// Extra response header lines (`name: value\r\n`…) for the client: the limiter's
    /// `x-ratelimit-*`. Added to proxied responses.
    public var responseHeaderLines: [UInt8] = []
    /// Set when the limiter refused the request: `rate_limited:<scope>` (the access log's outcome).
    public var limitOutcome: String?
    /// Set by the limiter when token limits apply: told the real usage when the response ends.
    public var settlement: UsageSettlement?
    /// The limiter asked the provider for a usage chunk the client did not ask for: hide it.
    public var hideStreamUsage = false

    /// Pipeline bookkeeping for `suspend()`; set and cleared by `Pipeline.run`.
    var stage = 0
    var running: Pipeline?
    var completion: ((Pipeline.Outcome) -> Void)?
    var suspension: PipelineResumer?

    /// For a middleware about to return `.suspend`: the handle that continues the pipeline.
    public func suspend() -> PipelineResumer {
        guard let pipeline = running, let completion else {
            preconditionFailure("suspend() outside a middleware's process()")
        }
        let stage = self.stage
        let r = PipelineResumer { [unowned self] decision in
            switch decision {
            case .next: pipeline.run(self, from: stage + 1, completion: completion)
            case .respond(let resp): completion(.respond(resp))
            case .suspend: preconditionFailure("resume(.suspend) is meaningless")
            }
        }
        suspension = r
        return r
    }

    /// The client called Anthropic's own Messages API (`…/v1/messages`), not OpenAI's: the
    /// request is passed through natively, the JWT may come as `x-api-key`, and the gateway's own
    /// errors are written in Anthropic's shape.
    public var callsAnthropicAPI: Bool { path.hasSuffix("/v1/messages") }

    public init(requestID: String, head: HTTPRequestHead, body: [UInt8], clientAddress: String,
                startNanos: UInt64, configuration: GatewayConfiguration) {
        self.requestID = requestID; self.head = head; self.body = body
        self.clientAddress = clientAddress; self.startNanos = startNanos
        self.configuration = configuration
        self.path = head.path; self.target = head.target
    }
}

/// A response the gateway produces itself (errors, health checks, metrics).
public struct LocalResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]
    public var closeConnection: Bool
    /// The error this response renders (the body is OpenAI's shape; the layer that knows the
    /// client's API may render it in another one).
    public var error: GatewayError?

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8], closeConnection: Bool = false) {
        self.status = status; self.headers = headers; self.body = body; self.closeConnection = closeConnection
    }

    public init(_ error: GatewayError) {
        self.init(status: error.status,
                  headers: [("content-type", "application/json")] + error.extraHeaders,
                  body: Array(error.jsonBody.utf8), closeConnection: error.closesConnection)
        self.error = error
    }
}

/// The alias router's decision for one request, read by the proxy coordinator.
public final class RoutePlan {
    public let alias: String
    /// The tier list the caller was served from.
    public let tier: String
    /// Targets in the order they are tried: the sticky weighted choice, the rest of the tier's
    /// list, then the alias's fallback (no target twice).
    public let candidates: [ModelTarget]
    public let retryOn: Set<Int>
    public let maxAttempts: Int
    /// The request body with `model` as a slot (and any `max_tokens` clamp applied).
    public let body: JSONMemberEdits

    public init(alias: String, tier: String, candidates: [ModelTarget], retryOn: Set<Int>, maxAttempts: Int,
                body: JSONMemberEdits) {
        self.alias = alias; self.tier = tier; self.candidates = candidates
        self.retryOn = retryOn; self.maxAttempts = maxAttempts; self.body = body
    }

    /// The body for `target`: its model name in the slot.
    public func body(for target: ModelTarget) -> [UInt8] {
        body.render(slot: target.quotedModel)   // validated at load: no quote, backslash or control
    }
}

/// Settles a request's reserved token estimate against what it really used, when the response
/// ended (or never started); loop thread. Idempotent: the first call counts (the proxy settles
/// with what it saw; the connection's end-of-request call is then a no-op).
public protocol UsageSettlement: AnyObject {
    /// `usage`: total tokens the provider reported; nil when it reported none (then `prompt` and
    /// `streamedEvents` — content events streamed to the client — give an estimate).
    func settle(usage: Int64?, streamedEvents: Int, responded: Bool)
}
