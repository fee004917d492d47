import PortcullisCore

/// The whole validated configuration. Immutable once loaded; shared read-only by all workers
/// (a reload builds a new one and swaps it in, never mutates this one).
public struct GatewayConfiguration: Sendable {
    public var source: String
    public var server: ServerConfiguration
    public var providers: [ProviderConfiguration]
    public var routes: [RouteConfiguration]
    public var log: LogConfiguration
    /// Nil when no `auth:` section is configured (no authentication).
    public var auth: AuthConfiguration?

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
}

public enum ProviderKind: String, Sendable { case openai, anthropic }

/// Where a provider lives, parsed from `base_url`.
public struct UpstreamURL: Sendable, Equatable {
    public var tls: Bool
    public var host: String
    public var port: UInt16
    /// Prefix prepended to the client's path (no trailing slash), e.g. "" or "/openai".
    public var basePath: String

    /// The Host header value for upstream requests.
    public var authority: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return (tls && port == 443) || (!tls && port == 80) ? h : "\(h):\(port)"
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

public struct ProviderConfiguration: Sendable {
    public var name: String
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
}

public struct RouteTimeouts: Sendable, Equatable {
    public var connect: Duration64 = .seconds(5)
    public var firstByte: Duration64 = .seconds(60)
    public var idle: Duration64 = .seconds(30)
    public var total: Duration64 = .seconds(600)
}

public struct RouteConfiguration: Sendable {
    /// Exact path, or a prefix when it ends in `*` (`/v1/*`).
    public var path: String
    public var provider: String
    public var timeouts: RouteTimeouts
    /// Route-specific authentication replacing JWT for this route (webhooks).
    public var hmac: HMACAuthConfiguration?

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
