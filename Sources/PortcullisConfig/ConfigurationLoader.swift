import PortcullisCore
import PortcullisHTTP
#if canImport(Glibc)
import Glibc
#endif

/// YAML text → validated `GatewayConfiguration`. Every failure is a `ConfigError` naming
/// file:line:column and the key. Reads the file and the environment; no other side effects.
public enum ConfigurationLoader {
    public static func load(file path: String, environment: [String: String] = ProcessEnvironment.current()) throws(ConfigError) -> GatewayConfiguration {
        guard let bytes = FileReader.bytes(path) else {
            throw ConfigError(file: path, mark: .init(line: 0, column: 0), key: "",
                              message: "cannot read the file: \(Syscall.errorString(pc_errnoValue()))")
        }
        return try parse(String(decoding: bytes, as: UTF8.self), file: path, environment: environment)
    }

    public static func parse(_ text: String, file: String, environment: [String: String] = [:]) throws(ConfigError) -> GatewayConfiguration {
        let root = try YAMLReader.parse(text, file: file)
        var top = try MappingReader(root, file: file, path: "")
        var server = ServerConfiguration()
        if let n = top.node("server") { server = try Self.server(n, file) }
        else { server.listen = [SocketAddress.parse("127.0.0.1:8080")!] }
        guard let pn = top.node("providers") else { throw top.missing("providers") }
        let providers = try Self.providers(pn, file, environment)
        var defaults = RoutingDefaults()
        if let n = top.node("routing") { defaults = try routing(n, file) }
        var tierPolicies: [String: TierPolicy] = [:]
        if let n = top.node("tiers") { tierPolicies = try tiers(n, file) }
        var models = ModelsConfiguration()
        if let n = top.node("models") {
            models = try Self.models(n, file, providers: providers, defaults: defaults, tiers: tierPolicies)
        } else {
            models.defaults = defaults
            models.tiers = tierPolicies
        }
        guard let rn = top.node("routes") else { throw top.missing("routes") }
        let routes = try Self.routes(rn, file, providers: providers, models: models, env: environment)
        var log = LogConfiguration()
        if let ln = top.node("log") { log = try Self.log(ln, file) }
        var auth: AuthConfiguration?
        if let an = top.node("auth") { auth = try Self.auth(an, file) }
        var limits: LimitsConfiguration?
        if let n = top.node("limits") { limits = try Self.limits(n, file) }
        var redis: RedisConfiguration?
        if let n = top.node("redis") {
            redis = try Self.redis(n, file)
            if limits == nil {
                throw ConfigError(file: file, mark: n.mark, key: "redis", message: "redis holds the limits: configure limits too")
            }
        }
        var metrics = MetricsConfiguration()
        if let n = top.node("metrics") { metrics = try Self.metrics(n, file) }
        try top.rejectUnknownKeys(allowed: ["server", "providers", "routes", "log", "auth", "models", "tiers", "routing",
                                            "limits", "redis", "metrics"])
        return GatewayConfiguration(source: file, server: server, providers: providers, routes: routes, log: log, auth: auth,
                                    models: models, limits: limits, redis: redis, metrics: metrics)
    }

    static func server(_ node: YAMLNode, _ file: String) throws(ConfigError) -> ServerConfiguration {
        var r = try MappingReader(node, file: file, path: "server")
        var s = ServerConfiguration()
        if let list = try r.stringList("listen") {
            guard !list.isEmpty else { throw r.error("listen", r.node("listen")!, "must name at least one address") }
            s.listen = []
            for (text, n) in list {
                guard let a = SocketAddress.parse(text) else {
                    throw r.error("listen", n, "expected a numeric host:port such as 127.0.0.1:8080 or [::1]:8080, found '\(text)'")
                }
                s.listen.append(a)
            }
        } else {
            s.listen = [SocketAddress.parse("127.0.0.1:8080")!]
        }
        if let wn = r.node("workers") {
            if case .scalar("auto", _, _) = wn { s.workers = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
            else if case .scalar(let t, _, true) = wn, let v = Int(t), (1...256).contains(v) { s.workers = v }
            else { throw r.error("workers", wn, "expected 'auto' or an integer from 1 to 256, found \(r.describe(wn))") }
        } else {
            s.workers = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        }
        s.maxConnections = try r.int("max_connections", range: 1...1_000_000) ?? s.maxConnections
        s.maxConnectionsPerClient = try r.int("max_connections_per_client", range: 0...1_000_000) ?? s.maxConnectionsPerClient
        s.maxHeaderBytes = try r.int("max_header_bytes", range: 1024...1_048_576) ?? s.maxHeaderBytes
        s.maxBodyBytes = try r.int("max_body_bytes", range: 0...1_073_741_824) ?? s.maxBodyBytes
        s.headerTimeout = try r.duration("header_timeout") ?? s.headerTimeout
        s.keepaliveTimeout = try r.duration("keepalive_timeout") ?? s.keepaliveTimeout
        s.maxRequestsPerConnection = try r.int("max_requests_per_connection", range: 1...Int.max) ?? s.maxRequestsPerConnection
        s.drainTimeout = try r.duration("drain_timeout") ?? s.drainTimeout
        s.upstreamHeaders = try addedHeaders(&r, "upstream_headers", allowed: [.requestID, .forwarded]) ?? s.upstreamHeaders
        s.responseHeaders = try addedHeaders(&r, "response_headers", allowed: [.requestID, .provider]) ?? s.responseHeaders
        try r.rejectUnknownKeys(allowed: ["listen", "workers", "max_connections", "max_connections_per_client", "max_header_bytes", "max_body_bytes",
                                          "header_timeout", "keepalive_timeout", "max_requests_per_connection", "drain_timeout",
                                          "upstream_headers", "response_headers"])
        return s
    }

    /// A list of `AddedHeaders` names from `allowed` (`[]` for none); each at most once.
    static func addedHeaders(_ r: inout MappingReader, _ k: String,
                             allowed: AddedHeaders) throws(ConfigError) -> AddedHeaders? {
        guard let list = try r.stringList(k) else { return nil }
        let names = AddedHeaders.names.filter { allowed.contains($0.header) }.map(\.name)
        var out: AddedHeaders = []
        for (text, item) in list {
            guard let h = AddedHeaders.names.first(where: { $0.name == text })?.header, allowed.contains(h) else {
                throw r.error(k, item, "expected one of \(names.joined(separator: ", ")), found '\(text)'")
            }
            guard out.insert(h).inserted else { throw r.error(k, item, "'\(text)' is listed twice") }
        }
        return out
    }

    static func providers(_ node: YAMLNode, _ file: String, _ env: [String: String]) throws(ConfigError) -> [ProviderConfiguration] {
        let top = try MappingReader(node, file: file, path: "providers")
        guard !top.items.isEmpty else { throw ConfigError(file: file, mark: node.mark, key: "providers", message: "must define at least one provider") }
        var out: [ProviderConfiguration] = []
        for item in top.items {
            // Provider names appear in response headers (x-portcullis-provider), logs and metrics.
            guard !item.key.isEmpty, item.key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C && $0 != 0x2F }) else {
                throw ConfigError(file: file, mark: item.keyMark, key: "providers.\(item.key)",
                                  message: "provider names are printable ASCII without spaces, quotes, backslashes or '/'")
            }
            var r = try MappingReader(item.value, file: file, path: "providers.\(item.key)")
            let urlText = try r.requiredString("base_url")
            guard let url = UpstreamURL.parse(urlText) else {
                throw r.error("base_url", r.node("base_url")!, "expected http://host[:port][/path] or https://…, found '\(urlText)'")
            }
            var kind = ProviderKind.openai
            if let k = try r.string("kind") {
                guard let pk = ProviderKind(rawValue: k) else {
                    throw r.error("kind", r.node("kind")!, "expected openai or anthropic, found '\(k)'")
                }
                kind = pk
            }
            var apiKey: String?
            let apiKeyEnv = try r.string("api_key_env")
            if let envName = apiKeyEnv {
                apiKey = env[envName].flatMap { $0.isEmpty ? nil : $0 }
                // The key becomes a header value: visible ASCII only (no CR/LF, spaces or controls).
                if let key = apiKey, !key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
                    throw r.error("api_key_env", r.node("api_key_env")!,
                                  "environment variable \(envName) is not a header-safe key (it holds spaces, control or non-ASCII characters)")
                }
            }
            if let fileName = try r.string("api_key_file") {
                guard apiKeyEnv == nil else { throw r.error("api_key_file", r.node("api_key_file")!, "set api_key_env or api_key_file, not both") }
                let path = CredentialFile.resolve(fileName, environment: env)
                guard let bytes = FileReader.bytes(path, limit: 65536) else {
                    throw r.error("api_key_file", r.node("api_key_file")!, "cannot read '\(path)'")
                }
                var end = bytes.count                      // a trailing newline is not part of the key
                while end > 0 && [10, 13, 32, 9].contains(bytes[end - 1]) { end -= 1 }
                let key = String(decoding: bytes[..<end], as: UTF8.self)
                guard !key.isEmpty, key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                    throw r.error("api_key_file", r.node("api_key_file")!, "'\(path)' does not hold a header-safe key (one line of visible ASCII)")
                }
                apiKey = key
            }
            var caFile: String?
            if let ca = try r.string("ca_file") {
                let path = CredentialFile.resolve(ca, environment: env)
                guard access(path, R_OK) == 0 else { throw r.error("ca_file", r.node("ca_file")!, "cannot read '\(path)'") }
                caFile = path
            }
            let p = ProviderConfiguration(
                name: item.key, kind: kind, baseURL: url, apiKeyEnv: apiKeyEnv, apiKey: apiKey, caFile: caFile,
                maxIdleConnections: try r.int("max_idle_connections", range: 0...10_000) ?? 64,
                idleConnectionTimeout: try r.duration("idle_connection_timeout") ?? .seconds(60),
                defaultMaxTokens: try r.int("default_max_tokens", range: 1...10_000_000) ?? 4096, ordinal: out.count)
            try r.rejectUnknownKeys(allowed: ["base_url", "kind", "api_key_env", "api_key_file", "ca_file", "max_idle_connections",
                                              "idle_connection_timeout", "default_max_tokens"])
            out.append(p)
        }
        return out
    }

    static func routes(_ node: YAMLNode, _ file: String, providers: [ProviderConfiguration], models: ModelsConfiguration,
                       env: [String: String]) throws(ConfigError) -> [RouteConfiguration] {
        guard case .sequence(let items, _) = node else {
            throw ConfigError(file: file, mark: node.mark, key: "routes", message: "expected a list of routes, found \(node.kindName)")
        }
        guard !items.isEmpty else { throw ConfigError(file: file, mark: node.mark, key: "routes", message: "must define at least one route") }
        var out: [RouteConfiguration] = []
        for (i, item) in items.enumerated() {
            var r = try MappingReader(item, file: file, path: "routes[\(i)]")
            let path = try r.requiredString("path")
            guard path.hasPrefix("/") else { throw r.error("path", r.node("path")!, "must start with '/', found '\(path)'") }
            var target: ProviderConfiguration?
            if let provider = try r.string("provider") {
                guard let p = providers.first(where: { $0.name == provider }) else {
                    throw r.error("provider", r.node("provider")!, "unknown provider '\(provider)' (defined: \(providers.map(\.name).joined(separator: ", ")))")
                }
                target = p
            }
            var alias: ModelAlias?
            if let a = try r.string("alias") {
                guard let found = models.aliases[a] else {
                    throw r.error("alias", r.node("alias")!, "unknown alias '\(a)' (defined in models: \(models.aliasOrder.joined(separator: ", ")))")
                }
                alias = found
            }
            let tier = try r.string("tier")
            let passthrough = try r.bool("passthrough_models") ?? false
            var policy = RouteConfiguration.MaxTokensPolicy.clamp
            if let p = try r.string("max_tokens_policy") {
                guard let v = RouteConfiguration.MaxTokensPolicy(rawValue: p) else {
                    throw r.error("max_tokens_policy", r.node("max_tokens_policy")!, "expected clamp or reject, found '\(p)'")
                }
                policy = v
            }
            var upstreamPath = try r.string("upstream_path")
            if let u = upstreamPath {
                guard case .success(let c) = RequestTarget.canonicalize(u), c.target == u, !u.contains("?") else {
                    throw r.error("upstream_path", r.node("upstream_path")!, "expected a canonical absolute path such as /v1/chat/completions, found '\(u)'")
                }
            }
            if target != nil && alias != nil {
                throw r.error("alias", r.node("alias")!, "a route has either provider or alias, not both")
            }
            if passthrough && target == nil {
                throw r.error("passthrough_models", r.node("passthrough_models")!, "passthrough_models needs provider (where other models go)")
            }
            if target == nil && models.isEmpty {
                throw r.missing("provider")
            }
            if tier != nil && target != nil && !passthrough {
                throw r.error("tier", r.node("tier")!, "tier applies to alias routes (a plain route has no tiers)")
            }
            if alias != nil && upstreamPath == nil { upstreamPath = "/v1/chat/completions" }
            var t = RouteTimeouts()
            if let tn = r.node("timeouts") {
                var tr = try MappingReader(tn, file: file, path: "routes[\(i)].timeouts")
                t.connect = try tr.duration("connect") ?? t.connect
                t.firstByte = try tr.duration("first_byte") ?? t.firstByte
                t.idle = try tr.duration("idle") ?? t.idle
                t.total = try tr.duration("total") ?? t.total
                try tr.rejectUnknownKeys(allowed: ["connect", "first_byte", "idle", "total"])
            }
            var hmac: HMACAuthConfiguration?
            if let an = r.node("auth") { hmac = try routeAuth(an, file, path: "routes[\(i)].auth", env: env) }
            var methods = ["GET", "POST"]
            if let list = try r.stringList("methods") {
                methods = []
                for (m, mn) in list {
                    guard !m.isEmpty, m.utf8.allSatisfy({ $0 >= 65 && $0 <= 90 }) else {
                        throw r.error("methods", mn, "expected upper-case method names such as GET or POST, found '\(m)'")
                    }
                    guard !["TRACE", "TRACK", "CONNECT"].contains(m) else {
                        throw r.error("methods", mn, "\(m) is never forwarded by the gateway")
                    }
                    if !methods.contains(m) { methods.append(m) }
                }
                guard !methods.isEmpty else { throw r.error("methods", r.node("methods")!, "must name at least one method") }
            }
            try r.rejectUnknownKeys(allowed: ["path", "provider", "timeouts", "auth", "methods", "alias", "tier",
                                              "passthrough_models", "max_tokens_policy", "upstream_path"])
            if out.contains(where: { $0.path == path }) {
                throw r.error("path", r.node("path")!, "duplicate route path '\(path)'")
            }
            out.append(RouteConfiguration(path: path, provider: target, timeouts: t, hmac: hmac, methods: methods,
                                          alias: alias, tier: tier, passthroughModels: passthrough,
                                          maxTokensPolicy: policy, upstreamPath: upstreamPath, index: out.count))
        }
        return out
    }

    static func log(_ node: YAMLNode, _ file: String) throws(ConfigError) -> LogConfiguration {
        var r = try MappingReader(node, file: file, path: "log")
        var l = LogConfiguration()
        if let lv = try r.string("level") {
            guard let level = LogLevel(name: lv) else { throw r.error("level", r.node("level")!, "expected debug, info, warn or error, found '\(lv)'") }
            l.level = level
        }
        l.access = try r.bool("access") ?? l.access
        if let f = try r.string("format") {
            guard let format = LogConfiguration.Format(rawValue: f) else { throw r.error("format", r.node("format")!, "expected json or text, found '\(f)'") }
            l.format = format
        }
        l.bufferBytes = try r.int("buffer_bytes", range: 4096...1_073_741_824) ?? l.bufferBytes
        try r.rejectUnknownKeys(allowed: ["level", "access", "format", "buffer_bytes"])
        return l
    }

    static func metrics(_ node: YAMLNode, _ file: String) throws(ConfigError) -> MetricsConfiguration {
        var r = try MappingReader(node, file: file, path: "metrics")
        var m = MetricsConfiguration()
        m.tenantLabels = try r.bool("tenant_labels") ?? m.tenantLabels
        m.maxTenants = try r.int("max_tenants", range: 0...100_000) ?? m.maxTenants
        try r.rejectUnknownKeys(allowed: ["tenant_labels", "max_tenants"])
        return m
    }
}

/// systemd credentials (`LoadCredential=`): a relative `*_file` path names a file under
/// `$CREDENTIALS_DIRECTORY` when that is set; absolute paths are used as written.
public enum CredentialFile {
    public static func resolve(_ path: String, environment: [String: String]) -> String {
        guard !path.hasPrefix("/"), let dir = environment["CREDENTIALS_DIRECTORY"], !dir.isEmpty else { return path }
        return dir + "/" + path
    }
}

/// The process environment as a dictionary (config loading only; never on the request path).
public enum ProcessEnvironment {
    public static func current() -> [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return out
    }
}

func pc_errnoValue() -> Int32 { errno }
