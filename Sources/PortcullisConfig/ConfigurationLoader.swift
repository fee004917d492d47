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
        let config = GatewayConfiguration(source: file, server: ServerConfiguration(), providers: [], routes: [], log: LogConfiguration())

        if let n = top.node("server") { config.server = try server(n, file) }
        else { config.server.listen = [SocketAddress.parse("127.0.0.1:8080")!] }
        guard let pn = top.node("providers") else { throw top.missing("providers") }
        config.providers = try providers(pn, file, environment)
        var defaults = RoutingDefaults()
        if let n = top.node("routing") { defaults = try routing(n, file) }
        var tierPolicies: [String: TierPolicy] = [:]
        if let n = top.node("tiers") { tierPolicies = try tiers(n, file) }
        if let n = top.node("models") {
            config.models = try models(n, file, providers: config.providers, defaults: defaults, tiers: tierPolicies)
        } else {
            config.models.defaults = defaults
            config.models.tiers = tierPolicies
        }
        guard let rn = top.node("routes") else { throw top.missing("routes") }
        config.routes = try routes(rn, file, providers: config.providers, models: config.models, env: environment)
        if !config.models.isEmpty {
            config.modelListRoute = RouteConfiguration(path: "/v1/models", provider: nil, timeouts: RouteTimeouts(), hmac: nil,
                                                       methods: ["GET", "HEAD"])
        }
        if let ln = top.node("log") { config.log = try log(ln, file) }
        if let an = top.node("auth") { config.auth = try auth(an, file) }
        if let n = top.node("limits") { config.limits = try limits(n, file) }
        if let n = top.node("redis") {
            config.redis = try redis(n, file)
            if config.limits == nil {
                throw ConfigError(file: file, mark: n.mark, key: "redis", message: "redis holds the limits: configure limits too")
            }
        }
        try top.rejectUnknownKeys(allowed: ["server", "providers", "routes", "log", "auth", "models", "tiers", "routing",
                                            "limits", "redis"])
        return config
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
        s.maxHeaderBytes = try r.int("max_header_bytes", range: 1024...1_048_576) ?? s.maxHeaderBytes
        s.maxBodyBytes = try r.int("max_body_bytes", range: 0...1_073_741_824) ?? s.maxBodyBytes
        s.headerTimeout = try r.duration("header_timeout") ?? s.headerTimeout
        s.keepaliveTimeout = try r.duration("keepalive_timeout") ?? s.keepaliveTimeout
        s.maxRequestsPerConnection = try r.int("max_requests_per_connection", range: 1...Int.max) ?? s.maxRequestsPerConnection
        s.drainTimeout = try r.duration("drain_timeout") ?? s.drainTimeout
        try r.rejectUnknownKeys(allowed: ["listen", "workers", "max_connections", "max_header_bytes", "max_body_bytes",
                                          "header_timeout", "keepalive_timeout", "max_requests_per_connection", "drain_timeout"])
        return s
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
            let p = ProviderConfiguration(name: item.key, kind: kind, baseURL: url)
            p.index = out.count
            if let envName = try r.string("api_key_env") {
                p.apiKeyEnv = envName
                p.apiKey = env[envName].flatMap { $0.isEmpty ? nil : $0 }
                // The key becomes a header value: visible ASCII only (no CR/LF, spaces or controls).
                if let key = p.apiKey, !key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
                    throw r.error("api_key_env", r.node("api_key_env")!,
                                  "environment variable \(envName) is not a header-safe key (it holds spaces, control or non-ASCII characters)")
                }
            }
            if let ca = try r.string("ca_file") {
                guard access(ca, R_OK) == 0 else { throw r.error("ca_file", r.node("ca_file")!, "cannot read '\(ca)'") }
                p.caFile = ca
            }
            p.maxIdleConnections = try r.int("max_idle_connections", range: 0...10_000) ?? p.maxIdleConnections
            p.defaultMaxTokens = try r.int("default_max_tokens", range: 1...10_000_000) ?? p.defaultMaxTokens
            p.idleConnectionTimeout = try r.duration("idle_connection_timeout") ?? p.idleConnectionTimeout
            try r.rejectUnknownKeys(allowed: ["base_url", "kind", "api_key_env", "ca_file", "max_idle_connections", "idle_connection_timeout",
                                              "default_max_tokens"])
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
                                          maxTokensPolicy: policy, upstreamPath: upstreamPath))
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
        try r.rejectUnknownKeys(allowed: ["level", "access"])
        return l
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
