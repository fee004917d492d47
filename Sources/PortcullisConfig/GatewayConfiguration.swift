import PortcullisCore
import Synchronization

/// The whole validated configuration: one immutable **generation**. A class so that the
/// request path shares one reference instead of copying every field. Built whole by
/// `ConfigurationLoader` (every field `let`, checked `Sendable`) and shared read-only by all
/// workers; a reload builds a new one, and each request keeps the one it started with.
public final class GatewayConfiguration: Sendable {
    public let source: String
    public let server: ServerConfiguration
    public let providers: [ProviderConfiguration]
    public let routes: [RouteConfiguration]
    public let log: LogConfiguration
    /// Nil when no `auth:` section is configured (no authentication).
    public let auth: AuthConfiguration?
    /// Aliases, tiers and failover defaults (`models`, `tiers`, `routing`); empty when unused.
    public let models: ModelsConfiguration
    /// `limits:`; nil when absent (no rate limits).
    public let limits: LimitsConfiguration?
    /// `redis:`; nil: limits live in this process's memory.
    public let redis: RedisConfiguration?
    /// `metrics:` (labels and their cardinality cap).
    public let metrics: MetricsConfiguration
    /// The gateway's own `GET /v1/models` (aliases for the caller's tier), when `models` is set.
    public let modelListRoute: RouteConfiguration?

    init(source: String, server: ServerConfiguration, providers: [ProviderConfiguration],
         routes: [RouteConfiguration], log: LogConfiguration, auth: AuthConfiguration?, models: ModelsConfiguration,
         limits: LimitsConfiguration?, redis: RedisConfiguration?, metrics: MetricsConfiguration) {
        self.source = source; self.server = server; self.providers = providers
        self.routes = routes; self.log = log; self.auth = auth; self.models = models
        self.limits = limits; self.redis = redis; self.metrics = metrics
        self.modelListRoute = models.isEmpty ? nil
            : RouteConfiguration(path: "/v1/models", provider: nil, timeouts: RouteTimeouts(), hmac: nil, methods: ["GET", "HEAD"],
                                 index: routes.count)
    }

    public func provider(named n: String) -> ProviderConfiguration? {
        providers.first { $0.name == n }
    }
}

public struct ServerConfiguration: Sendable {
    public var listen: [SocketAddress] = []
    /// Worker threads, each with its own event loop; `auto` = number of cores.
    public var workers: Int = 1
    public var maxConnections: Int = 10_000
    /// Open connections one client address may hold (all workers together); 0: no cap. Off by
    /// default: behind a load balancer every client shares its address.
    public var maxConnectionsPerClient: Int = 0
    public var maxHeaderBytes: Int = 16_384
    public var maxBodyBytes: Int = 4_194_304
    public var headerTimeout: Duration64 = .seconds(10)
    public var keepaliveTimeout: Duration64 = .seconds(75)
    /// Cap on requests answered on one client connection before it is closed.
    public var maxRequestsPerConnection: Int = 100_000
    /// On SIGTERM, how long in-flight requests may take to finish before the process exits.
    public var drainTimeout: Duration64 = .seconds(30)
    /// The lines the gateway adds to every upstream request (`server.upstream_headers`).
    public var upstreamHeaders: AddedHeaders = [.requestID, .forwarded]
    /// The lines the gateway adds to every client response (`server.response_headers`).
    public var responseHeaders: AddedHeaders = [.requestID, .provider]
}

/// Header lines the gateway may add, on an operator's choice (as Kong's `headers` and Envoy's
/// `generate_request_id` / `suppress_envoy_headers`). Identity (`x-tenant-id` …), the provider
/// key, framing and the limiter's `Retry-After` / `x-ratelimit-*` are not optional. A bit set:
/// read per request, so a test is one AND.
public struct AddedHeaders: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// `X-Request-Id` (upstream and in answers; the access log keeps the id either way).
    public static let requestID = AddedHeaders(rawValue: 1)
    /// `X-Forwarded-For` and `X-Forwarded-Proto` upstream: the client's address, which a
    /// third-party provider may have no business seeing.
    public static let forwarded = AddedHeaders(rawValue: 2)
    /// `x-portcullis-provider` (and `x-portcullis-model` on alias routes) in answers: which
    /// backend served, which an operator may not want to disclose.
    public static let provider = AddedHeaders(rawValue: 4)
    /// Their names in the configuration file.
    public static let names: [(name: String, header: AddedHeaders)] =
        [("request_id", .requestID), ("forwarded", .forwarded), ("provider", .provider)]
}

public enum ProviderKind: String, Sendable { case openai, anthropic }

/// Where a provider lives, parsed from `base_url`.
public struct UpstreamURL: Sendable, Equatable {
    public let tls: Bool
    public let host: String
    public let port: UInt16
    /// Prefix prepended to the client's path (no trailing slash), e.g. "" or "/openai".
    public let basePath: String

    /// The Host header value for upstream requests (computed once; read per request).
    public let authority: String

    public init(tls: Bool, host: String, port: UInt16, basePath: String) {
        self.tls = tls; self.host = host; self.port = port; self.basePath = basePath
        let h = host.contains(":") ? "[\(host)]" : host
        self.authority = (tls && port == 443) || (!tls && port == 80) ? h : "\(h):\(port)"
    }

    public static func parse(_ s: String) -> UpstreamURL? {
        var rest: Substring
        var tls: Bool
        if s.hasPrefix("https://") { tls = true; rest = s.dropFirst(8) }
        else if s.hasPrefix("http://") { tls = false; rest = s.dropFirst(7) }
        else { return nil }
        var path = ""
        if let slash = rest.firstIndex(of: "/") {
            path = String(rest[slash...])
            rest = rest[..<slash]
        }
        while path.hasSuffix("/") { path.removeLast() }
        guard !rest.isEmpty, !rest.contains("@"), !path.contains("?"), !path.contains("#") else { return nil }
        var host = String(rest)
        var port: UInt16 = tls ? 443 : 80
        if let (h, p) = SocketAddress.splitHostPort(host) { host = h; port = p }
        else if host.contains(":") && !host.hasPrefix("[") { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, port > 0 else { return nil }
        return UpstreamURL(tls: tls, host: host, port: port, basePath: path)
    }
}

/// What defines an upstream connection: two providers (or two generations of one) with the
/// same endpoint share pooled connections and a TLS context.
public struct UpstreamEndpoint: Hashable, Sendable {
    public let tls: Bool
    public let host: String
    public let port: UInt16
    public let caFile: String?

    /// A small dense number per distinct endpoint, stable for the life of the process (so a
    /// reload keeps its pools and per-worker pool slots stay array indices). Interned at load
    /// time, never on the request path.
    public var slot: Int { UpstreamEndpoint.slots.withLock { map in
        if let n = map[self] { return n }
        let n = map.count
        map[self] = n
        return n
    } }
    static let slots = Mutex<[UpstreamEndpoint: Int]>([:])
}

/// One provider. Immutable (a class: shared by reference on the request path).
public final class ProviderConfiguration: Sendable {
    public let name: String
    public let kind: ProviderKind
    public let baseURL: UpstreamURL
    public let apiKeyEnv: String?
    /// The key read from `api_key_env` at load time; nil when unset. Never logged.
    public let apiKey: String?
    /// A PEM bundle of CAs to trust instead of the system store (tests, private CAs).
    public let caFile: String?
    /// Idle keep-alive connections kept per worker.
    public let maxIdleConnections: Int
    public let idleConnectionTimeout: Duration64
    /// `kind: anthropic`: the `max_tokens` sent when an OpenAI request names none (Anthropic requires it).
    public let defaultMaxTokens: Int
    /// Scheme, host, port and CA file: what pools and TLS contexts are keyed by.
    public let endpoint: UpstreamEndpoint
    /// `endpoint.slot`: this provider's per-worker pool index.
    public let poolSlot: Int
    /// Position in `GatewayConfiguration.providers`: indexes per-generation tables (metrics).
    public let ordinal: Int
    /// `x-portcullis-provider: <name>\r\n`, prebuilt for responses of plain routes.
    public let responseHeaderLine: [UInt8]
    /// The key as its kind's request header line, written once (`authorization: Bearer <key>`
    /// for OpenAI-compatible APIs, `x-api-key: <key>` for Anthropic's); empty without a key.
    /// Never logged.
    public let credentialLine: [UInt8]

    init(name: String, kind: ProviderKind, baseURL: UpstreamURL, apiKeyEnv: String? = nil, apiKey: String? = nil,
         caFile: String? = nil, maxIdleConnections: Int = 64, idleConnectionTimeout: Duration64 = .seconds(60),
         defaultMaxTokens: Int = 4096, ordinal: Int = 0) {
        self.ordinal = ordinal
        self.name = name; self.kind = kind; self.baseURL = baseURL
        self.apiKeyEnv = apiKeyEnv; self.apiKey = apiKey; self.caFile = caFile
        self.maxIdleConnections = maxIdleConnections; self.idleConnectionTimeout = idleConnectionTimeout
        self.defaultMaxTokens = defaultMaxTokens
        self.endpoint = UpstreamEndpoint(tls: baseURL.tls, host: baseURL.host, port: baseURL.port, caFile: baseURL.tls ? caFile : nil)
        self.poolSlot = endpoint.slot
        self.responseHeaderLine = Array("x-portcullis-provider: \(name)\r\n".utf8)
        switch (kind, apiKey) {
        case (_, nil): credentialLine = []
        case (.openai, let key?): credentialLine = Array("authorization: Bearer \(key)\r\n".utf8)
        case (.anthropic, let key?): credentialLine = Array("x-api-key: \(key)\r\n".utf8)
        }
    }
}

public struct RouteTimeouts: Sendable, Equatable {
    public var connect: Duration64 = .seconds(5)
    public var firstByte: Duration64 = .seconds(60)
    public var idle: Duration64 = .seconds(30)
    public var total: Duration64 = .seconds(600)
    public init(connect: Duration64 = .seconds(5), firstByte: Duration64 = .seconds(60), idle: Duration64 = .seconds(30),
                total: Duration64 = .seconds(600)) {
        self.connect = connect; self.firstByte = firstByte; self.idle = idle; self.total = total
    }
}

/// One route. Immutable after loading (a class: shared by reference on the request path).
///
/// Three kinds: a **plain** route names a `provider` and forwards as is; an **alias** route has no
/// provider and is served by `models` (its `alias`, or the body's `"model"`); a **passthrough**
/// route (`passthrough_models: true`) serves known aliases through `models` and sends any other
/// model to its `provider` unchanged.
public final class RouteConfiguration: Sendable {
    public enum MaxTokensPolicy: String, Sendable { case clamp, reject }

    /// Exact path, or a prefix when it ends in `*` (`/v1/*`). Matched byte for byte. A
    /// well-known one shares its literal's storage (`String.interned`).
    public let path: String
    let pattern: PathPattern
    public let timeouts: RouteTimeouts
    /// Route-specific authentication replacing JWT for this route (webhooks).
    public let hmac: HMACAuthConfiguration?
    /// The methods this route serves (`methods:`; default GET and POST). Others get 405.
    public let methods: [String]
    /// `methods` as an `Allow` header value.
    public let allowHeader: String
    /// The provider of a plain or passthrough route, resolved at load time.
    public let provider: ProviderConfiguration?
    /// A route-level alias (`alias:`), resolved at load time.
    public let alias: ModelAlias?
    /// `tier:` — only callers whose verified tier is this one (a route never raises a tier).
    public let tier: String?
    public let passthroughModels: Bool
    public let maxTokensPolicy: MaxTokensPolicy
    /// The path sent upstream in place of the request's (`upstream_path:`; alias routes with a
    /// route-level alias default to `/v1/chat/completions`). Nil: the canonical request target.
    public let upstreamPath: String?

    /// Whether requests on this route go through the alias router.
    public var usesAliases: Bool { provider == nil || passthroughModels }

    /// Position in `GatewayConfiguration.routes` (`routes.count` for the gateway's own
    /// `/v1/models`): indexes per-generation tables (metrics), nothing else.
    public let index: Int

    init(path: String, provider: ProviderConfiguration?, timeouts: RouteTimeouts, hmac: HMACAuthConfiguration?,
         methods: [String] = ["GET", "POST"], alias: ModelAlias? = nil, tier: String? = nil,
         passthroughModels: Bool = false, maxTokensPolicy: MaxTokensPolicy = .clamp, upstreamPath: String? = nil,
         index: Int = 0) {
        self.index = index
        self.path = path.interned; self.provider = provider; self.timeouts = timeouts; self.hmac = hmac
        self.pattern = PathPattern(path)
        self.methods = methods; self.allowHeader = methods.joined(separator: ", ")
        self.alias = alias; self.tier = tier; self.passthroughModels = passthroughModels
        self.maxTokensPolicy = maxTokensPolicy; self.upstreamPath = upstreamPath
    }

    public func matches(_ requestPath: String) -> Bool { pattern.matches(requestPath) }
}

public struct LogConfiguration: Sendable {
    public enum Format: String, Sendable { case json, text }
    public var level: LogLevel = .info
    /// One line per request on stdout.
    public var access: Bool = true
    /// `json` (default): one JSON object per line; `text`: space-separated `key=value`.
    public var format: Format = .json
    /// Access-log bytes a worker may hold while stdout is not writable; beyond it lines are
    /// dropped and counted (`portcullis_access_log_dropped_total`).
    public var bufferBytes: Int = 1 << 20
}

/// `metrics:`: what `/metrics` labels by.
public struct MetricsConfiguration: Sendable {
    /// Label token counts by tenant (false: one series per model only).
    public var tenantLabels = true
    /// Distinct tenants labelled per process; later tenants are counted as `other`.
    public var maxTenants = 100
}
