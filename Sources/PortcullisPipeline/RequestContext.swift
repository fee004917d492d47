import PortcullisCore
import PortcullisHTTP
import PortcullisConfig
import PortcullisJSON

/// Everything the pipeline knows about one request. Created by the server connection when a
/// request's head and body are complete; owned by that connection; touched only on its loop's
/// thread. Middlewares read it and fill in their part (route, tenant, upstream headers).
public final class RequestContext {
    public let requestID: RequestID
    public let head: HTTPRequestHead
    /// The whole request body (bounded by `server.max_body_bytes`); kept for replay on failover.
    /// Any change to it forgets `bodyMembers`' scan.
    public var body: [UInt8] { didSet { scannedMembers = nil; scanFailure = nil } }
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
    /// the upstream client adds), written once as bytes by `HeaderHygieneMiddleware`: the
    /// request head copies them as they are.
    public var upstreamHeaderLines: [UInt8] = []

    /// The verified identity's upstream lines (`x-tenant-id: …\r\n`…), sent after
    /// `upstreamHeaderLines`. Set by `TenantContextMiddleware` only; a block of its own so a
    /// caller's run of requests can share one rendering (it is never edited in place).
    public var upstreamIdentityLines: [UInt8] = []

    /// The top-level members of an OpenAI request body that stages read, in this order (see
    /// `BodyMember`): the limiter (token estimate, usage chunk) and the alias router (model,
    /// token caps) share one scan of the body.
    public static let bodyNames: JSONNames = ["model", "max_tokens", "max_completion_tokens", "stream", "stream_options"]
    /// Indices into `bodyMembers()`' scan (inlinable: constants where they are used).
    public enum BodyMember {
        @inlinable public static var model: Int { 0 }
        @inlinable public static var maxTokens: Int { 1 }
        @inlinable public static var maxCompletionTokens: Int { 2 }
        @inlinable public static var stream: Int { 3 }
        @inlinable public static var streamOptions: Int { 4 }
    }
    /// `bodyMembers()`' answer for the current body: nil (not scanned yet), or the scan, or why
    /// it failed.
    private var scannedMembers: JSONReader.TopLevelScan?
    private var scanFailure: JSONReader.Failure?

    /// `bodyNames` in the current body (`JSONReader.memberScan`: the fast guarded scan, else the
    /// strict reader's verdict), scanned at most once per version of the body.
    public func bodyMembers() throws(JSONReader.Failure) -> JSONReader.TopLevelScan {
        if let s = scannedMembers { return s }
        if let f = scanFailure { throw f }
        let names = Self.bodyNames
        let scanned = body.withUnsafeBytes { b -> Result<JSONReader.TopLevelScan, JSONReader.Failure> in
            do throws(JSONReader.Failure) { return .success(try JSONReader.memberScan(names, in: b)) } catch { return .failure(error) }
        }
        switch scanned {
        case .success(let s): scannedMembers = s; return s
        case .failure(let f): scanFailure = f; throw f
        }
    }

    /// Verified identity (the auth issue fills these; nothing here trusts client headers).
    public var tenant: String? { didSet { caller = nil } }
    public var user: String? { didSet { caller = nil } }
    public var tier: String? { didSet { caller = nil } }
    /// The object the authentication stage verified `tenant`, `user` and `tier` from, while they
    /// are its values (`setCaller`; changing one of them drops it). The verifier hands out one
    /// object per token, so the same object is the same caller: a stage that keeps what it
    /// derived for its last caller (and the object with it, so it cannot be another's later)
    /// compares one reference instead of three strings.
    public private(set) var caller: AnyObject?

    /// Sets the verified identity and the object it came from.
    public func setCaller(_ object: AnyObject, tenant: String, user: String?, tier: String?) {
        self.tenant = tenant; self.user = user; self.tier = tier
        caller = object
    }
    /// Set by the alias router on alias routes: the targets to try, in order (the plan may be
    /// shared with other requests: it holds nothing of this one's). Nil on plain routes (one
    /// attempt to `provider` with `body` as received).
    public var plan: RoutePlan?
    /// Set with `plan`: the body with `model` as a slot (and any `max_tokens` clamp applied),
    /// each target's model put in it per attempt (`body(for:)`).
    public var routedBody: JSONMemberEdits?

    /// The body an attempt at `target` sends: the routed body with the target's model (the body
    /// as received on a plain route, without a target or a routed body).
    public func body(for target: ModelTarget?) -> [UInt8] {
        guard let t = target else { return body }
        return routedBody?.render(slot: t.quotedModel) ?? body   // (quotedModel validated at load: no quote, backslash or control)
    }

    /// The size of `body(for: target)` when `writeBody(for:to:)` can write it into a caller's
    /// buffer (`JSONMemberEdits.inPlaceCount`); nil otherwise. (These two read `routedBody` where
    /// it is stored: a copy of it, from another module, costs a few hundred instructions.)
    public func inPlaceBodyCount(for target: ModelTarget) -> Int? {
        routedBody?.inPlaceCount(slot: target.quotedModel)
    }

    /// Writes `body(for: target)` at `dst`, which holds `inPlaceBodyCount(for: target)` bytes;
    /// only when that is not nil (else the caller's bytes would go out unwritten: a programmer
    /// error, stopped here).
    public func writeBody(for target: ModelTarget, to dst: UnsafeMutableRawPointer) {
        guard let r = routedBody?.replacedSlot, let original = routedBody?.original else {
            preconditionFailure("writeBody(for:to:) without an in-place body: inPlaceBodyCount was nil")
        }
        JSONMemberEdits.write(r, of: original, with: target.quotedModel, to: dst)
    }
    /// Extra response header lines (`name: value\r\n`…) for the client (the limiter's
    /// `x-portcullis-max-tokens-clamped`). Added to proxied responses.
    public var responseHeaderLines: [UInt8] = []
    /// Lines rendered straight into the response head when it is written (the limiter's
    /// `x-ratelimit-*`), after `responseHeaderLines`.
    public var responseHeaderSource: ResponseHeaderSource?

    /// `responseHeaderLines` and the source's lines, as bytes (tests, diagnostics).
    public var renderedResponseHeaderLines: [UInt8] {
        var out = responseHeaderLines
        if let s = responseHeaderSource {
            out += [UInt8](unsafeUninitializedCapacity: s.maxLineBytes) { buf, n in n = s.writeLines(to: UnsafeMutableRawBufferPointer(buf)) }
        }
        return out
    }
    /// Set when the limiter refused the request: `rate_limited:<scope>` (the access log's outcome).
    public var limitOutcome: String?
    /// Set by the limiter when token limits apply: told the real usage when the response ends.
    public var settlement: UsageSettlement?
    /// The limiter asked the provider for a usage chunk the client did not ask for: hide it.
    public var hideStreamUsage = false

    /// Pipeline bookkeeping for `suspend()`; set and cleared by `Pipeline.run`, and read only
    /// while that run is on the stack (its caller holds the pipeline and the handler), so they
    /// are not retained here; `suspend()` takes strong references for its continuation.
    var stage = 0
    unowned(unsafe) var running: Pipeline?
    unowned(unsafe) var completion: PipelineCompletion?
    var suspension: PipelineResumer?

    /// For a middleware about to return `.suspend`: the handle that continues the pipeline.
    public func suspend() -> PipelineResumer {
        guard let pipeline = running, let completion else {
            preconditionFailure("suspend() outside a middleware's process()")
        }
        let stage = self.stage
        let r = PipelineResumer { [unowned self] decision in
            switch decision {
            case .next: pipeline.run(self, from: stage + 1, handler: completion)
            case .respond(let resp): completion.pipelineFinished(self, .respond(resp))
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

    public init(requestID: RequestID, head: HTTPRequestHead, body: [UInt8], clientAddress: String,
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

/// The alias router's decision, read by the proxy coordinator: which targets, in which order,
/// how many attempts. Immutable, and nothing in it is one request's: the router keeps one per
/// alias tier list whose order does not depend on the caller, for every request it serves (the
/// request's body is its context's `routedBody`). Loop thread of the worker whose router made it.
public final class RoutePlan {
    public let alias: String
    /// The tier list the caller was served from.
    public let tier: String
    /// Targets in the order they are tried: the sticky weighted choice, the rest of the tier's
    /// list, then the alias's fallback (no target twice).
    public let candidates: [ModelTarget]
    public let retryOn: Set<Int>
    public let maxAttempts: Int

    public init(alias: String, tier: String, candidates: [ModelTarget], retryOn: Set<Int>, maxAttempts: Int) {
        self.alias = alias; self.tier = tier; self.candidates = candidates
        self.retryOn = retryOn; self.maxAttempts = maxAttempts
    }
}

/// Response header lines a stage renders only when the response head is written, into the
/// head's own buffer (no bytes of their own before that). Loop thread.
public protocol ResponseHeaderSource: AnyObject {
    /// The lowercase prefix of the names of its lines (`x-ratelimit-`): the provider's fields
    /// named so are dropped from the relayed head, so a client gets one answer to each question
    /// (and not the provider account's own, which tells of every tenant's traffic).
    var replacedNamePrefix: StaticString { get }
    /// The most bytes `writeLines` writes.
    var maxLineBytes: Int { get }
    /// Writes the lines (`name: value\r\n`…) at the start of `to`, which holds at least
    /// `maxLineBytes`; returns how many bytes it wrote.
    func writeLines(to: UnsafeMutableRawBufferPointer) -> Int
}

/// Settles a request's reserved token estimate against what it really used, when the response
/// ended (or never started); loop thread. Idempotent: the first call counts (the proxy settles
/// with what it saw; the connection's end-of-request call is then a no-op).
public protocol UsageSettlement: AnyObject {
    /// `usage`: total tokens the provider reported; nil when it reported none (then `prompt` and
    /// `streamedEvents` — content events streamed to the client — give an estimate).
    func settle(usage: Int64?, streamedEvents: Int, responded: Bool)
}
