import PortcullisCore

/// The whole validated configuration. A class so that the request path shares one reference
/// instead of copying (and retaining) every field. Mutated only by the loader while it builds
/// it; after `ConfigurationLoader` returns it is immutable and shared read-only by all workers
/// (a reload builds a new one and swaps it in).
public final class GatewayConfiguration: @unchecked Sendable {
    public var source: String
    public var server: ServerConfiguration
    public var providers: [ProviderConfiguration]
    public var routes: [RouteConfiguration]
    public var log: LogConfiguration
    /// Nil when no `auth:` section is configured (no authentication).
    public var auth: AuthConfiguration?
    /// Aliases, tiers and failover defaults (`models`, `tiers`, `routing`); empty when unused.
    public var models = ModelsConfiguration()
    /// `limits:`; nil when absent (no rate limits).
    public var limits: LimitsConfiguration?
    /// `redis:`; nil: limits live in this process's memory.
    public var redis: RedisConfiguration?
    /// The gateway's own `GET /v1/models` (aliases for the caller's tier), when `models` is set.
    public var modelListRoute: RouteConfiguration?

    init(source: String, server: ServerConfiguration, providers: [ProviderConfiguration],
         routes: [RouteConfiguration], log: LogConfiguration) {
        self.source = source; self.server = server; self.providers = providers
        self.routes = routes; self.log = log
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
    public var maxHeaderBytes: Int = 16_384
    public var maxBodyBytes: Int = 4_194_304
    public var headerTimeout: Duration64 = .seconds(10)
    public var keepaliveTimeout: Duration64 = .seconds(75)
    /// Cap on requests answered on one client connection before it is closed.
    public var maxRequestsPerConnection: Int = 100_000
    /// On SIGTERM, how long in-flight requests may take to finish before the process exits.
    public var drainTimeout: Duration64 = .seconds(30)
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

/// One provider. Immutable after loading (a class: shared by reference on the request path).
public final class ProviderConfiguration: @unchecked Sendable {
    public var name: String
    /// Position in `GatewayConfiguration.providers` (dense; indexes per-worker pools).
    public var index: Int = 0
    public var kind: ProviderKind
    public var baseURL: UpstreamURL
    public var apiKeyEnv: String?
    /// The key read from `api_key_env` at load time; nil when unset. Never logged.
    public var apiKey: String?
    /// A PEM bundle of CAs to trust instead of the system store (tests, private CAs).
    public var caFile: String?
    /// Idle keep-alive connections kept per worker.
    public var maxIdleConnections: Int = 64
    public var idleConnectionTimeout: Duration64 = .seconds(60)
    /// `kind: anthropic`: the `max_tokens` sent when an OpenAI request names none (Anthropic requires it).
    public var defaultMaxTokens = 4096
    /// `x-portcullis-provider: <name>\r\n`, prebuilt for responses of plain routes.
    public let responseHeaderLine: [UInt8]

    init(name: String, kind: ProviderKind, baseURL: UpstreamURL) {
        self.name = name; self.kind = kind; self.baseURL = baseURL
        self.responseHeaderLine = Array("x-portcullis-provider: \(name)\r\n".utf8)
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
public final class RouteConfiguration: @unchecked Sendable {
    public enum MaxTokensPolicy: String, Sendable { case clamp, reject }

    /// Exact path, or a prefix when it ends in `*` (`/v1/*`).
    public let path: String
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

    init(path: String, provider: ProviderConfiguration?, timeouts: RouteTimeouts, hmac: HMACAuthConfiguration?,
         methods: [String] = ["GET", "POST"], alias: ModelAlias? = nil, tier: String? = nil,
         passthroughModels: Bool = false, maxTokensPolicy: MaxTokensPolicy = .clamp, upstreamPath: String? = nil) {
        self.path = path; self.provider = provider; self.timeouts = timeouts; self.hmac = hmac
        self.methods = methods; self.allowHeader = methods.joined(separator: ", ")
        self.alias = alias; self.tier = tier; self.passthroughModels = passthroughModels
        self.maxTokensPolicy = maxTokensPolicy; self.upstreamPath = upstreamPath
    }

    public func matches(_ requestPath: String) -> Bool {
        if path.hasSuffix("*") { return requestPath.hasPrefix(path.dropLast()) }
        return requestPath == path
    }
}

public struct LogConfiguration: Sendable {
    public var level: LogLevel = .info
    /// One line per request on stdout.
    public var access: Bool = true
}
