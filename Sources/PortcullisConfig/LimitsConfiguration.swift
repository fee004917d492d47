import PortcullisCore

/// One set of limits (`limits.global`, `limits.per_user`, `limits.tiers.<tier>`). Nil: no limit.
public struct LimitRates: Sendable, Equatable {
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    public var tokensPerDay: Int?
    public var maxConcurrentStreams: Int?
    /// The largest `max_tokens` a request may ask for (clamped; see `Docs/limits.md`).
    public var maxTokensCap: Int?
    public init() {}

    public var isEmpty: Bool {
        requestsPerMinute == nil && tokensPerMinute == nil && tokensPerDay == nil && maxConcurrentStreams == nil
            && maxTokensCap == nil
    }
}

/// `limits:` — wallet protection. Tier limits apply per tenant, `per_user` per (tenant, user),
/// `global` across everything.
public struct LimitsConfiguration: Sendable {
    /// The tier of callers without a tier claim (and without a tier of their own in `tiers`).
    public var defaultTier: String?
    public var global = LimitRates()
    public var perUser = LimitRates()
    public var tiers: [String: LimitRates] = [:]
    public init() {}
}

/// `redis:` — the shared store of every instance's limits. Absent: this instance's memory.
public struct RedisConfiguration: Sendable {
    public enum FailurePolicy: String, Sendable { case failOpen = "fail_open", failClosed = "fail_closed" }
    public var host: String
    public var port: UInt16
    public var password: String?
    public var database = 0
    /// Every Redis wait is bounded by this.
    public var timeout: Duration64 = .milliseconds(50)
    public var onFailure = FailurePolicy.failOpen
    /// Keys start with this (several gateways may share one Redis).
    public var keyPrefix = "portcullis"
    /// Local leases: an admission that goes to Redis also takes up to capacity / `leaseDivisor`
    /// more tokens of each of its buckets for this worker, spent by its next requests without a
    /// round trip (never more than Redis granted, so limits are never exceeded). 0: off, every
    /// request decided in Redis. Buckets smaller than the divisor are never leased.
    public var leaseDivisor = 64
    /// Unspent leased tokens go back to Redis after this long.
    public var leaseHold: Duration64 = .seconds(1)

    /// `redis://[:password@]host:port/db`
    public static func parse(url: String) -> RedisConfiguration? {
        guard url.hasPrefix("redis://") else { return nil }
        var rest = Substring(url.dropFirst(8))
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let auth = rest[..<at]
            guard auth.hasPrefix(":") else { return nil }
            password = String(auth.dropFirst())
            rest = rest[rest.index(after: at)...]
        }
        var db = 0
        if let slash = rest.firstIndex(of: "/") {
            let d = rest[rest.index(after: slash)...]
            if !d.isEmpty { guard let n = Int(d), (0...1000).contains(n) else { return nil }; db = n }
            rest = rest[..<slash]
        }
        guard let (host, port) = SocketAddress.splitHostPort(String(rest)), !host.isEmpty else { return nil }
        var c = RedisConfiguration(host: host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host, port: port)
        c.password = password
        c.database = db
        return c
    }
}

extension ConfigurationLoader {
    static func limitRates(_ node: YAMLNode, _ file: String, path: String) throws(ConfigError) -> LimitRates {
        var r = try MappingReader(node, file: file, path: path)
        var l = LimitRates()
        l.requestsPerMinute = try r.int("requests_per_minute", range: 1...1_000_000_000)
        l.tokensPerMinute = try r.int("tokens_per_minute", range: 1...1_000_000_000_000)
        l.tokensPerDay = try r.int("tokens_per_day", range: 1...1_000_000_000_000)
        l.maxConcurrentStreams = try r.int("max_concurrent_streams", range: 1...1_000_000)
        l.maxTokensCap = try r.int("max_tokens_cap", range: 1...10_000_000)
        try r.rejectUnknownKeys(allowed: ["requests_per_minute", "tokens_per_minute", "tokens_per_day",
                                          "max_concurrent_streams", "max_tokens_cap"])
        return l
    }

    static func limits(_ node: YAMLNode, _ file: String) throws(ConfigError) -> LimitsConfiguration {
        var r = try MappingReader(node, file: file, path: "limits")
        var l = LimitsConfiguration()
        l.defaultTier = try r.string("default_tier")
        if let n = r.node("global") { l.global = try limitRates(n, file, path: "limits.global") }
        if let n = r.node("per_user") { l.perUser = try limitRates(n, file, path: "limits.per_user") }
        if let tn = r.node("tiers") {
            let tr = try MappingReader(tn, file: file, path: "limits.tiers")
            for item in tr.items { l.tiers[item.key] = try limitRates(item.value, file, path: "limits.tiers.\(item.key)") }
        }
        if let d = l.defaultTier, l.tiers[d] == nil {
            throw r.error("default_tier", r.node("default_tier")!, "no tier '\(d)' in limits.tiers (defined: \(l.tiers.keys.sorted().joined(separator: ", ")))")
        }
        if l.global.maxConcurrentStreams != nil || l.global.maxTokensCap != nil {
            throw r.error("global", r.node("global")!, "global takes requests_per_minute, tokens_per_minute and tokens_per_day only")
        }
        try r.rejectUnknownKeys(allowed: ["default_tier", "global", "per_user", "tiers"])
        return l
    }

    static func redis(_ node: YAMLNode, _ file: String) throws(ConfigError) -> RedisConfiguration {
        var r = try MappingReader(node, file: file, path: "redis")
        let url = try r.requiredString("url")
        guard var c = RedisConfiguration.parse(url: url) else {
            throw r.error("url", r.node("url")!, "expected redis://[:password@]host:port[/db] with a numeric port")
        }
        c.timeout = try r.duration("timeout") ?? c.timeout
        if let p = try r.string("on_failure") {
            guard let v = RedisConfiguration.FailurePolicy(rawValue: p) else {
                throw r.error("on_failure", r.node("on_failure")!, "expected fail_open or fail_closed, found '\(p)'")
            }
            c.onFailure = v
        }
        if let k = try r.string("key_prefix") {
            guard !k.isEmpty, k.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x7B && $0 != 0x7D }) else {
                throw r.error("key_prefix", r.node("key_prefix")!, "printable ASCII without spaces or braces")
            }
            c.keyPrefix = k
        }
        c.leaseDivisor = try r.int("lease_divisor", range: 0...1_000_000) ?? c.leaseDivisor
        if let h = try r.duration("lease_hold") {
            guard h.nanoseconds >= 1_000_000 && h.nanoseconds <= 60_000_000_000 else {
                throw r.error("lease_hold", r.node("lease_hold")!, "expected a duration from 1ms to 60s")
            }
            c.leaseHold = h
        }
        try r.rejectUnknownKeys(allowed: ["url", "timeout", "on_failure", "key_prefix", "lease_divisor", "lease_hold"])
        return c
    }
}
