import PortcullisCore
#if canImport(Glibc)
import Glibc
#endif

/// One place a request can be served: a provider and the model name it is sent with.
/// Immutable; `index` is dense over every target of the configuration (metrics, breakers).
public final class ModelTarget: Sendable {
    public let provider: ProviderConfiguration
    public let model: String
    /// Share of the A/B split within its tier list (fallback targets: 0).
    public let weight: Int
    /// `provider/model`, as written in the config.
    public let id: String
    public let index: Int
    /// FNV-1a 64 of `id` (the sticky split's per-target input), computed once.
    public let idHash: UInt64
    /// `x-portcullis-provider: …\r\nx-portcullis-model: …\r\n`, prebuilt for responses.
    public let responseHeaderLines: [UInt8]
    /// The model as a JSON string literal (the body's `model` slot).
    public let quotedModel: [UInt8]

    init(provider: ProviderConfiguration, model: String, weight: Int, index: Int) {
        self.provider = provider; self.model = model; self.weight = weight
        self.id = "\(provider.name)/\(model)"; self.index = index
        var h: UInt64 = 0xcbf29ce484222325
        for b in id.utf8 { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        self.idHash = h
        self.quotedModel = [34] + Array(model.utf8) + [34]
        self.responseHeaderLines = Array("x-portcullis-provider: \(provider.name)\r\nx-portcullis-model: \(model)\r\n".utf8)
    }
}

/// `models.<alias>`: which targets serve an alias, per verified tier, and what to fail over to.
public final class ModelAlias: Sendable {
    public let name: String
    /// Tier name → weighted targets (the A/B split, and the first failover candidates).
    public let tiers: [String: [ModelTarget]]
    /// Tried in order after the tier's own targets.
    public let fallback: [ModelTarget]
    /// Used for callers whose tier has no entry (and callers without a tier).
    public let defaultTier: String?
    public let retryOn: Set<Int>
    public let maxAttempts: Int

    init(name: String, tiers: [String: [ModelTarget]], fallback: [ModelTarget], defaultTier: String?,
         retryOn: Set<Int>, maxAttempts: Int) {
        self.name = name; self.tiers = tiers; self.fallback = fallback; self.defaultTier = defaultTier
        self.retryOn = retryOn; self.maxAttempts = maxAttempts
        self.defaultTargets = defaultTier.flatMap { tiers[$0] }
    }

    /// The default tier's list, looked up once.
    let defaultTargets: [ModelTarget]?

    /// The tier list a caller with `tier` is served from, and the tier it was chosen by.
    public func targets(forTier tier: String?) -> (tier: String, targets: [ModelTarget])? {
        if let t = tier, let list = tiers[t] { return (t, list) }
        if let d = defaultTier, let list = defaultTargets { return (d, list) }
        return nil
    }
}

/// `tiers.<tier>`: guards per verified tier.
public struct TierPolicy: Sendable {
    /// The aliases this tier may use (nil: every alias that has an entry for it or a default).
    public let aliases: [String]?
    /// `max_tokens` / `max_completion_tokens` above this are clamped (or refused, per route).
    public let maxTokensCap: Int?
}

/// `routing:` defaults for failover and circuit breakers.
public struct RoutingDefaults: Sendable {
    public var retryOn: Set<Int> = [429, 500, 502, 503, 504]
    public var maxAttempts = 3
    /// Consecutive failures that open a target's breaker (per worker).
    public var breakerFailures = 5
    /// How long an open breaker skips its target before one half-open probe.
    public var breakerCooldown: Duration64 = .seconds(30)
    /// Upper bound on a provider's `Retry-After` honoured as an open breaker.
    public var maxRetryAfter: Duration64 = .seconds(300)
    public init() {}
}

/// Everything about model routing, resolved at load time.
public struct ModelsConfiguration: Sendable {
    public var aliases: [String: ModelAlias] = [:] {
        didSet { aliasNames = aliases.count <= 16 ? aliases.map { AliasName(bytes: Array($0.key.utf8), alias: $0.value) } : [] }
    }
    /// The aliases by their UTF-8 names, for the usual handful: the router compares the body's
    /// bytes with these, building no String and hashing nothing. Empty beyond 16 aliases.
    var aliasNames: [AliasName] = []
    struct AliasName: Sendable {
        let bytes: [UInt8]
        let alias: ModelAlias
    }

    /// The alias named exactly `utf8` (a JSON string's contents without escapes), nil if none.
    public func alias(utf8 name: UnsafeRawBufferPointer) -> ModelAlias? {
        if aliasNames.isEmpty { return aliases.isEmpty ? nil : aliases[String(decoding: name, as: UTF8.self)] }
        guard let p = name.baseAddress else { return aliases[""] }
        for a in aliasNames where a.bytes.count == name.count {
            if a.bytes.withUnsafeBytes({ memcmp($0.baseAddress!, p, name.count) }) == 0 { return a.alias }
        }
        return nil
    }
    /// Alias names in config order (`GET /v1/models`).
    public var aliasOrder: [String] = []
    public var tiers: [String: TierPolicy] = [:]
    public var defaults = RoutingDefaults()
    /// Every distinct target (by `provider/model`), indexed by `ModelTarget.index`.
    public var targets: [ModelTarget] = []

    public var isEmpty: Bool { aliases.isEmpty }

    /// The aliases a caller with `tier` may use, in config order.
    public func aliases(visibleTo tier: String?) -> [ModelAlias] {
        aliasOrder.compactMap { aliases[$0] }.filter { permits(tier: tier, alias: $0) }
    }

    /// Whether `tier` may use `alias` (it has a tier list for the caller, and the tier's guard allows it).
    public func permits(tier: String?, alias: ModelAlias) -> Bool {
        guard let chosen = alias.targets(forTier: tier) else { return false }
        return permits(tier: tier, chosenTier: chosen.tier, alias: alias)
    }

    /// `permits` when the alias's tier list was already chosen (no second lookup).
    public func permits(tier: String?, chosenTier: String, alias: ModelAlias) -> Bool {
        if tiers.isEmpty { return true }
        if let allowed = tiers[tier ?? chosenTier]?.aliases, !allowed.contains(alias.name) { return false }
        return true
    }
}

extension ConfigurationLoader {
    static func routing(_ node: YAMLNode, _ file: String) throws(ConfigError) -> RoutingDefaults {
        var r = try MappingReader(node, file: file, path: "routing")
        var d = RoutingDefaults()
        if let rs = try statusList(&r, "retry_on") { d.retryOn = rs }
        d.maxAttempts = try r.int("max_attempts", range: 1...10) ?? d.maxAttempts
        if let bn = r.node("breaker") {
            var br = try MappingReader(bn, file: file, path: "routing.breaker")
            d.breakerFailures = try br.int("failures", range: 1...1000) ?? d.breakerFailures
            d.breakerCooldown = try br.duration("cooldown") ?? d.breakerCooldown
            d.maxRetryAfter = try br.duration("max_retry_after") ?? d.maxRetryAfter
            try br.rejectUnknownKeys(allowed: ["failures", "cooldown", "max_retry_after"])
        }
        try r.rejectUnknownKeys(allowed: ["retry_on", "max_attempts", "breaker"])
        return d
    }

    static func statusList(_ r: inout MappingReader, _ key: String) throws(ConfigError) -> Set<Int>? {
        guard let list = try r.stringList(key) else { return nil }
        var out = Set<Int>()
        for (text, n) in list {
            guard let v = Int(text), (400...599).contains(v) else {
                throw r.error(key, n, "expected HTTP status codes from 400 to 599, found '\(text)'")
            }
            out.insert(v)
        }
        return out
    }

    static func tiers(_ node: YAMLNode, _ file: String) throws(ConfigError) -> [String: TierPolicy] {
        let top = try MappingReader(node, file: file, path: "tiers")
        var out: [String: TierPolicy] = [:]
        for item in top.items {
            var r = try MappingReader(item.value, file: file, path: "tiers.\(item.key)")
            let aliases = try r.stringList("aliases")?.map(\.0)
            let cap = try r.int("max_tokens_cap", range: 1...10_000_000)
            try r.rejectUnknownKeys(allowed: ["aliases", "max_tokens_cap"])
            out[item.key] = TierPolicy(aliases: aliases, maxTokensCap: cap)
        }
        return out
    }

    static func models(_ node: YAMLNode, _ file: String, providers: [ProviderConfiguration],
                       defaults: RoutingDefaults, tiers: [String: TierPolicy]) throws(ConfigError) -> ModelsConfiguration {
        let top = try MappingReader(node, file: file, path: "models")
        var m = ModelsConfiguration()
        m.defaults = defaults
        m.tiers = tiers
        var byID: [String: ModelTarget] = [:]

        func target(_ text: String, weight: Int, at n: YAMLNode, _ r: MappingReader, _ key: String) throws(ConfigError) -> ModelTarget {
            guard let slash = text.firstIndex(of: "/"), slash != text.startIndex, text.index(after: slash) != text.endIndex else {
                throw r.error(key, n, "expected provider/model, found '\(text)'")
            }
            let pname = String(text[..<slash]), model = String(text[text.index(after: slash)...])
            guard let p = providers.first(where: { $0.name == pname }) else {
                throw r.error(key, n, "unknown provider '\(pname)' (defined: \(providers.map(\.name).joined(separator: ", ")))")
            }
            guard model.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) else {
                throw r.error(key, n, "model names are printable ASCII without quotes or backslashes, found '\(model)'")
            }
            let shared = byID[text] ?? {
                let t = ModelTarget(provider: p, model: model, weight: 0, index: m.targets.count)
                m.targets.append(t); byID[text] = t
                return t
            }()
            return ModelTarget(provider: p, model: model, weight: weight, index: shared.index)
        }

        for item in top.items {
            let path = "models.\(item.key)"
            guard !item.key.isEmpty, item.key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) else {
                throw ConfigError(file: file, mark: item.keyMark, key: path, message: "alias names are printable ASCII without spaces or quotes")
            }
            var r = try MappingReader(item.value, file: file, path: path)
            guard let tn = r.node("tiers") else { throw r.missing("tiers") }
            var tr = try MappingReader(tn, file: file, path: path + ".tiers")
            var tierLists: [String: [ModelTarget]] = [:]
            for t in tr.items {
                _ = tr.node(t.key)
                let tpath = "\(path).tiers.\(t.key)"
                guard case .sequence(let entries, _) = t.value, !entries.isEmpty else {
                    throw ConfigError(file: file, mark: t.value.mark, key: tpath, message: "expected a non-empty list of { target, weight }")
                }
                var list: [ModelTarget] = []
                for (i, e) in entries.enumerated() {
                    var er = try MappingReader(e, file: file, path: "\(tpath)[\(i)]")
                    let text = try er.requiredString("target")
                    let w = try er.int("weight", range: 0...1_000_000) ?? 1
                    try er.rejectUnknownKeys(allowed: ["target", "weight"])
                    let mt = try target(text, weight: w, at: er.node("target")!, er, "target")
                    if list.contains(where: { $0.id == mt.id }) {
                        throw er.error("target", er.node("target")!, "duplicate target '\(text)' in this tier")
                    }
                    list.append(mt)
                }
                guard list.contains(where: { $0.weight > 0 }) else {
                    throw ConfigError(file: file, mark: t.value.mark, key: tpath, message: "at least one target needs a weight above 0")
                }
                tierLists[t.key] = list
            }
            guard !tierLists.isEmpty else { throw ConfigError(file: file, mark: tn.mark, key: path + ".tiers", message: "define at least one tier") }
            var fallback: [ModelTarget] = []
            if let list = try r.stringList("fallback") {
                for (text, n) in list { fallback.append(try target(text, weight: 0, at: n, r, "fallback")) }
            }
            let defaultTier = try r.string("default_tier")
            if let d = defaultTier, tierLists[d] == nil {
                throw r.error("default_tier", r.node("default_tier")!, "no tier '\(d)' in this alias (defined: \(tierLists.keys.sorted().joined(separator: ", ")))")
            }
            let retryOn = try statusList(&r, "retry_on") ?? defaults.retryOn
            let maxAttempts = try r.int("max_attempts", range: 1...10) ?? defaults.maxAttempts
            try r.rejectUnknownKeys(allowed: ["tiers", "fallback", "default_tier", "retry_on", "max_attempts"])
            m.aliases[item.key] = ModelAlias(name: item.key, tiers: tierLists, fallback: fallback, defaultTier: defaultTier,
                                             retryOn: retryOn, maxAttempts: maxAttempts)
            m.aliasOrder.append(item.key)
        }
        for (tier, policy) in tiers {
            for a in policy.aliases ?? [] where m.aliases[a] == nil {
                throw ConfigError(file: file, mark: top.mark, key: "tiers.\(tier).aliases", message: "unknown alias '\(a)'")
            }
        }
        return m
    }
}
