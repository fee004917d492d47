import PortcullisCore

/// `auth:` — edge authentication. Absent: no authentication (demo mode; a warning is logged).
public struct AuthConfiguration: Sendable {
    public var jwt: JWTConfiguration?
    /// Paths served without authentication (exact, or a prefix when ending in `*`).
    public var publicPaths: [String] = AuthConfiguration.defaultPublicPaths {
        didSet { publicPatterns = PathPatterns(publicPaths) }
    }
    private var publicPatterns = PathPatterns(AuthConfiguration.defaultPublicPaths)
    static let defaultPublicPaths = ["/healthz", "/readyz", "/metrics"]

    public func isPublic(_ path: String) -> Bool { publicPatterns.matches(path) }
}

/// A configured path: exact, or a prefix when it ends in `*` (`/v1/*`), matched byte for byte
/// against the canonical request path (routes and public paths read it the same way).
public struct PathPattern: Sendable {
    public let text: String
    /// `text` without its `*` when it is a prefix.
    let prefix: String?
    /// The bytes a match needs: exactly these many (exact), or at least (prefix).
    let byteCount: Int

    public init(_ text: String) {
        self.text = text
        prefix = text.utf8.last == UInt8(ascii: "*") ? String(text.dropLast()) : nil
        byteCount = prefix?.utf8.count ?? text.utf8.count
    }

    public func matches(_ path: String) -> Bool {
        if let p = prefix { return path.hasUTF8Prefix(p) }
        return path.sameUTF8(text)
    }
}

/// A set of path patterns (public paths), checked by length before any byte is compared: a
/// request path usually fails on its length alone. Immutable; a class (configuration copies
/// share it).
public final class PathPatterns: Sendable {
    let patterns: [PathPattern]
    public init(_ texts: [String]) { patterns = texts.map(PathPattern.init) }

    public func matches(_ path: String) -> Bool {
        let n = path.utf8.count
        return patterns.withUnsafeBufferPointer { ps in
            for i in ps.indices {
                let fits = ps[i].prefix == nil ? n == ps[i].byteCount : n >= ps[i].byteCount
                if fits && ps[i].matches(path) { return true }
            }
            return false
        }
    }
}

/// `auth.jwt`: how bearer tokens are verified and which claims carry identity.
public struct JWTConfiguration: Sendable {
    public var issuer: String?
    public var audiences: [String] = []
    public var leeway: Duration64 = .seconds(30)
    public var keys: [JWTKeyConfiguration] = []
    public var jwksFile: String?
    public var jwksMark = SourceMark(line: 0, column: 0)
    public var tenantClaim = "tenant_id"
    public var userClaim = "sub"
    public var tierClaim = "tier"
    /// Verified tokens remembered per worker (bounded; entries expire with the token).
    public var cacheSize = 10_000
    public init() {}
}

/// One configured verification key. Exactly one source is set.
public struct JWTKeyConfiguration: Sendable {
    public var kid: String
    public var alg: String
    public var secretEnv: String?
    public var secretFile: String?
    public var publicKeyFile: String?
    /// Where the key is declared, for error messages at load and reload time.
    public var file: String
    public var mark: SourceMark
    public var path: String

    public init(kid: String, alg: String, secretEnv: String?, secretFile: String?, publicKeyFile: String?,
                file: String, mark: SourceMark, path: String) {
        self.kid = kid; self.alg = alg; self.secretEnv = secretEnv; self.secretFile = secretFile
        self.publicKeyFile = publicKeyFile; self.file = file; self.mark = mark; self.path = path
    }
}

/// Per-route `auth.hmac`: HMAC-SHA256 request signatures.
///
/// `mode: request` (the default) signs the request's context, so a captured request cannot be
/// replayed later, to another path, or under another tenant:
/// `timestamp "\n" METHOD "\n" canonical-target "\n" tenant "\n" hex(SHA-256(body))`, with the
/// timestamp (Unix seconds, from `timestamp_header`) within `max_skew` of the gateway's clock.
/// `mode: body_only` signs the raw body alone (Shopify-style webhooks): it trusts the tenant
/// header as sent and does not stop replays.
public struct HMACAuthConfiguration: Sendable {
    public enum Encoding: String, Sendable { case base64, hex }
    public enum Mode: String, Sendable { case request, bodyOnly = "body_only" }
    public var mode: Mode = .request
    public var timestampHeader = "x-portcullis-timestamp"   // lowercased
    public var maxSkew: Duration64 = .seconds(300)
    public var header: String          // lowercased
    public var secretEnv: String
    public var secret: [UInt8]?        // read at load time; nil when the variable is unset
    public var encoding: Encoding = .base64
    public var tenantHeader: String?   // lowercased
    public var tenant: String?
}

public let supportedJWTAlgorithms = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
                                     "ES256", "ES384", "EdDSA"]

extension ConfigurationLoader {
    static func auth(_ node: YAMLNode, _ file: String) throws(ConfigError) -> AuthConfiguration {
        var r = try MappingReader(node, file: file, path: "auth")
        var a = AuthConfiguration()
        if let list = try r.stringList("public_paths") { a.publicPaths = list.map(\.0) }
        if let jn = r.node("jwt") { a.jwt = try jwt(jn, file) }
        try r.rejectUnknownKeys(allowed: ["jwt", "public_paths"])
        return a
    }

    static func jwt(_ node: YAMLNode, _ file: String) throws(ConfigError) -> JWTConfiguration {
        var r = try MappingReader(node, file: file, path: "auth.jwt")
        var j = JWTConfiguration()
        j.issuer = try r.string("issuer")
        if let aud = try r.stringList("audience") { j.audiences = aud.map(\.0) }
        j.leeway = try r.duration("leeway") ?? j.leeway
        if let kn = r.node("keys") {
            guard case .sequence(let items, _) = kn else {
                throw r.error("keys", kn, "expected a list of keys, found \(kn.kindName)")
            }
            for (i, item) in items.enumerated() {
                let path = "auth.jwt.keys[\(i)]"
                var kr = try MappingReader(item, file: file, path: path)
                let kid = try kr.requiredString("kid")
                let alg = try kr.requiredString("alg")
                guard supportedJWTAlgorithms.contains(alg) else {
                    throw kr.error("alg", kr.node("alg")!, "unsupported algorithm '\(alg)' (supported: \(supportedJWTAlgorithms.joined(separator: ", ")))")
                }
                let k = JWTKeyConfiguration(kid: kid, alg: alg, secretEnv: try kr.string("secret_env"),
                                            secretFile: try kr.string("secret_file"),
                                            publicKeyFile: try kr.string("public_key_file"),
                                            file: file, mark: item.mark, path: path)
                let sources = [k.secretEnv, k.secretFile, k.publicKeyFile].compactMap { $0 }.count
                guard sources == 1 else {
                    throw ConfigError(file: file, mark: item.mark, key: path,
                                      message: "set exactly one of secret_env, secret_file, public_key_file")
                }
                if alg.hasPrefix("HS") && k.publicKeyFile != nil {
                    throw kr.error("public_key_file", kr.node("public_key_file")!, "\(alg) needs a shared secret (secret_env or secret_file)")
                }
                if !alg.hasPrefix("HS") && k.publicKeyFile == nil {
                    throw ConfigError(file: file, mark: item.mark, key: path, message: "\(alg) needs public_key_file")
                }
                if j.keys.contains(where: { $0.kid == kid }) {
                    throw kr.error("kid", kr.node("kid")!, "duplicate kid '\(kid)'")
                }
                try kr.rejectUnknownKeys(allowed: ["kid", "alg", "secret_env", "secret_file", "public_key_file"])
                j.keys.append(k)
            }
        }
        if let jf = r.node("jwks_file") {
            j.jwksFile = try r.string("jwks_file")
            j.jwksMark = jf.mark
        }
        if j.keys.isEmpty && j.jwksFile == nil {
            throw ConfigError(file: file, mark: r.mark, key: "auth.jwt", message: "configure at least one key (keys or jwks_file)")
        }
        if let cn = r.node("claims") {
            var cr = try MappingReader(cn, file: file, path: "auth.jwt.claims")
            j.tenantClaim = try cr.string("tenant") ?? j.tenantClaim
            j.userClaim = try cr.string("user") ?? j.userClaim
            j.tierClaim = try cr.string("tier") ?? j.tierClaim
            try cr.rejectUnknownKeys(allowed: ["tenant", "user", "tier"])
        }
        j.cacheSize = try r.int("cache_size", range: 0...1_000_000) ?? j.cacheSize
        try r.rejectUnknownKeys(allowed: ["issuer", "audience", "leeway", "keys", "jwks_file", "claims", "cache_size"])
        return j
    }

    static func routeAuth(_ node: YAMLNode, _ file: String, path: String, env: [String: String]) throws(ConfigError) -> HMACAuthConfiguration {
        var r = try MappingReader(node, file: file, path: path)
        guard let hn = r.node("hmac") else { throw r.missing("hmac") }
        var h = try MappingReader(hn, file: file, path: path + ".hmac")
        let header = try h.requiredString("header").lowercased()
        let envName = try h.requiredString("secret_env")
        var cfg = HMACAuthConfiguration(header: header, secretEnv: envName)
        cfg.secret = env[envName].flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        if let e = try h.string("encoding") {
            guard let enc = HMACAuthConfiguration.Encoding(rawValue: e) else {
                throw h.error("encoding", h.node("encoding")!, "expected base64 or hex, found '\(e)'")
            }
            cfg.encoding = enc
        }
        if let m = try h.string("mode") {
            guard let mode = HMACAuthConfiguration.Mode(rawValue: m) else {
                throw h.error("mode", h.node("mode")!, "expected request or body_only, found '\(m)'")
            }
            cfg.mode = mode
        }
        cfg.timestampHeader = try h.string("timestamp_header")?.lowercased() ?? cfg.timestampHeader
        cfg.maxSkew = try h.duration("max_skew") ?? cfg.maxSkew
        if cfg.mode == .bodyOnly, let k = ["timestamp_header", "max_skew"].first(where: { h.items.map(\.key).contains($0) }) {
            throw h.error(k, h.node(k)!, "only used with mode: request")
        }
        cfg.tenantHeader = try h.string("tenant_header")?.lowercased()
        cfg.tenant = try h.string("tenant")
        if (cfg.tenantHeader == nil) == (cfg.tenant == nil) {
            throw ConfigError(file: file, mark: hn.mark, key: path + ".hmac", message: "set exactly one of tenant_header, tenant")
        }
        try h.rejectUnknownKeys(allowed: ["header", "secret_env", "encoding", "tenant_header", "tenant", "mode",
                                          "timestamp_header", "max_skew"])
        try r.rejectUnknownKeys(allowed: ["hmac"])
        return cfg
    }
}
