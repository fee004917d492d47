import PortcullisCore
import PortcullisHTTP
import PortcullisConfig
import PortcullisPipeline
import PortcullisJSON

/// Where limit decisions are made: this process's memory, or Redis (asynchronously).
/// Loop thread only; `done` is called exactly once, on the loop thread, possibly before
/// `acquire` returns.
public protocol LimitBackend: AnyObject {
    /// The decision at once when this backend can make it without waiting (memory); nil: ask
    /// with `acquire`.
    func acquireNow(_ requests: BucketList) -> AdmissionResult?
    func acquire(_ requests: BucketList, done: @escaping (AdmissionResult) -> Void)
    /// Adds `delta` to each *token* bucket of `buckets` without a check (negative gives back;
    /// the buckets' own `cost` is ignored; request buckets are passed over): settlement. (A
    /// request's whole bucket list is passed, so settling needs no array of its own.)
    func adjust(_ buckets: BucketList, by delta: Int64)
    /// Takes a concurrency slot; `done(true)` when one was free (`nil`: the store could not answer).
    func acquireSlot(_ slot: SlotRequest, done: @escaping (Bool?) -> Void)
    func releaseSlot(_ slot: SlotRequest)
}

/// The memory store as a backend (answers at once).
public final class MemoryLimitBackend: LimitBackend {
    let store: MemoryLimitStore
    public init(_ store: MemoryLimitStore) { self.store = store }
    public func acquireNow(_ requests: BucketList) -> AdmissionResult? { store.acquire(requests) }
    public func acquire(_ requests: BucketList, done: @escaping (AdmissionResult) -> Void) { done(store.acquire(requests)) }
    public func adjust(_ buckets: BucketList, by delta: Int64) { store.adjust(buckets, by: delta, tokensOnly: true) }
    public func acquireSlot(_ slot: SlotRequest, done: @escaping (Bool?) -> Void) { done(store.acquireSlot(slot)) }
    public func releaseSlot(_ slot: SlotRequest) { store.releaseSlot(slot) }
}

/// What a request holds once admitted: its token reservation, settled against the usage the
/// provider reported (or an estimate of what was streamed; usage above the estimate is charged
/// too), and its concurrency slot, released. Settled once, by whichever path ends the
/// request first (response end, failure, client gone, a later stage refusing it). It also
/// writes the admitted response's `x-ratelimit-*` lines, straight into its head.
final class LimitReservation: UsageSettlement, ResponseHeaderSource {
    let backend: LimitBackend
    /// The request's buckets, each token bucket's cost what was reserved at admission (`adjust`
    /// settles the token ones).
    let buckets: BucketList
    let promptEstimate: Int64
    var slot: SlotRequest?
    var settled = false
    let statuses: BucketStatuses

    init(backend: LimitBackend, buckets: BucketList, promptEstimate: Int64, slot: SlotRequest?, statuses: BucketStatuses) {
        self.backend = backend; self.buckets = buckets; self.promptEstimate = promptEstimate
        self.slot = slot; self.statuses = statuses
    }

    var replacedNamePrefix: StaticString { "x-ratelimit-" }
    var maxLineBytes: Int { RateLimitReport.linesCapacity }
    func writeLines(to out: UnsafeMutableRawBufferPointer) -> Int {
        RateLimitReport(set: buckets.bucketSet, statuses: statuses).writeLines(to: out)
    }

    func settle(usage: Int64?, streamedEvents: Int, responded: Bool) {
        guard !settled else { return }
        settled = true
        if let s = slot { backend.releaseSlot(s); slot = nil }
        guard buckets.bucketSet.countsTokens else { return }
        let actual: Int64
        if let u = usage { actual = u }
        else if responded { actual = promptEstimate + Int64(streamedEvents) }
        else { actual = 0 }                     // no response: the provider's failure is not charged
        let delta = actual - buckets.estimate
        guard delta != 0 else { return }
        backend.adjust(buckets, by: delta)
    }
}

/// The third pipeline stage: wallet protection. Every bucket a request touches — global, the
/// caller's tenant (by its verified tier's limits), the caller's user — is checked and debited
/// at once, before any upstream work: requests per minute, and an estimate of the request's
/// LLM tokens against tokens per minute and per day. Over a limit → `429` with `Retry-After`
/// and OpenAI's `x-ratelimit-*` headers (which admitted responses carry too).
///
/// Without authentication the tenant is the client address (the embedded default still protects
/// a single-instance deployment). One instance per worker; no per-request state of its own.
public final class RateLimitMiddleware: Middleware {
    public let name = "rate-limit"
    let limits: LimitsConfiguration
    let backend: LimitBackend
    let prefix: String
    let health: LimiterHealth?

    /// Scope names per tier, built once (answers, logs and metrics use them; requests only
    /// reference them).
    struct Scopes { let rpm, tpm, tpd, streams: String }

    /// A configured tier as the limiter applies it, built once: its name, rates, scope names,
    /// and whether its requests need a token estimate (any token limit on the way) or a body
    /// edit (a `max_tokens` cap).
    final class TierLimits {
        let name: String
        let rates: LimitRates
        let scopes: Scopes
        let needsTokens: Bool
        /// `needsTokensWithoutTier`: whether the global or per-user limits count tokens.
        init(name: String, rates: LimitRates, needsTokensWithoutTier: Bool) {
            self.name = name; self.rates = rates
            scopes = RateLimitMiddleware.scopes("tenant (\(name) tier)")
            needsTokens = needsTokensWithoutTier || rates.tokensPerMinute != nil || rates.tokensPerDay != nil
        }
    }
    let tiers: [String: TierLimits]
    /// The default tier's (for tokens without a tier claim, or with an unknown one).
    let defaultTier: TierLimits?
    /// Without a tier: whether requests need a token estimate (global or per-user token limits).
    let needsTokensWithoutTier: Bool
    /// The tier of the last request that named one (a run of one caller's requests skips the
    /// hashing). Loop thread only, like the middleware.
    var lastTier: TierLimits?

    /// The limits for a caller with `tier`: its own tier's, else the default tier's (also for an
    /// unknown tier).
    func tierLimits(_ tier: String?) -> TierLimits? {
        guard let t = tier else { return defaultTier }
        if let l = lastTier, l.name.sameUTF8(t) { return l }
        guard let l = tiers[t] else { return defaultTier }
        lastTier = l
        return l
    }
    static func scopes(_ s: String) -> Scopes {
        Scopes(rpm: s + " requests_per_minute", tpm: s + " tokens_per_minute", tpd: s + " tokens_per_day",
               streams: s + " max_concurrent_streams")
    }
    static let globalScopes = scopes("global")
    /// The buckets of one scope under one set of rates (nil where the rates set no limit),
    /// keyed `<base>:rpm`, `<base>:tpm`, `<base>:tpd`. Immutable; a class, so the caches hand out
    /// one reference.
    final class ScopeBuckets {
        let rpm, tpm, tpd: Bucket?
        init(_ rates: LimitRates, base: String, scopes: Scopes) {
            rpm = rates.requestsPerMinute.map { Bucket(key: base + ":rpm", capacity: Int64($0), windowMillis: 60_000, kind: .requests, scope: scopes.rpm) }
            tpm = rates.tokensPerMinute.map { Bucket(key: base + ":tpm", capacity: Int64($0), windowMillis: 60_000, kind: .tokens, scope: scopes.tpm) }
            tpd = rates.tokensPerDay.map { Bucket(key: base + ":tpd", capacity: Int64($0), windowMillis: 86_400_000, kind: .tokens, scope: scopes.tpd) }
        }
    }
    /// A tenant's key base, and the buckets of it and of its users, built once per worker
    /// (bounded caches, see `RecentKeys`): a request only references them. Loop thread only,
    /// like the middleware.
    final class TenantKeys {
        let base, streams: String
        /// The tenant's buckets under the tier its last request came with (a tenant's tokens
        /// normally all carry one tier; another tier rebuilds them).
        var tierBuckets = ForTier<ScopeBuckets>()
        var users = RecentKeys<UserKeys>(limit: RateLimitMiddleware.keyCacheLimit)
        /// The bucket set of the tenant's requests without a limited user.
        var set = ForTier<BucketSet>()
        init(_ base: String) {
            self.base = base; streams = base + ":streams"
        }
        func user(_ u: String, rates: LimitRates) -> UserKeys {
            users.value(for: u) { UserKeys(ScopeBuckets(rates, base: base + ":u:" + u.keyEscaped, scopes: RateLimitMiddleware.userScopes)) }
        }
        func tier(_ t: TierLimits) -> ScopeBuckets {
            tierBuckets.value(for: t) { ScopeBuckets(t.rates, base: base, scopes: t.scopes) }
        }
    }
    /// A user's buckets, and the bucket set of their requests.
    final class UserKeys {
        let buckets: ScopeBuckets
        var set = ForTier<BucketSet>()
        init(_ buckets: ScopeBuckets) { self.buckets = buckets }
    }
    /// A value derived for one tier (nil: no tier), kept until a request comes with another: a
    /// caller's requests normally all carry one tier, and another tier derives it again.
    struct ForTier<Value: AnyObject> {
        private var tier: TierLimits?
        private var value: Value?
        mutating func value(for t: TierLimits?, derive: () -> Value) -> Value {
            if let v = value, tier === t { return v }
            let v = derive()
            tier = t; value = v
            return v
        }
    }
    static let keyCacheLimit = 4096
    /// By verified tenant, and (no auth) by client address.
    var tenantKeys = RecentKeys<TenantKeys>(limit: RateLimitMiddleware.keyCacheLimit)
    var addressKeys = RecentKeys<TenantKeys>(limit: RateLimitMiddleware.keyCacheLimit)
    lazy var globalBuckets = ScopeBuckets(limits.global, base: prefix + ":{global}", scopes: Self.globalScopes)

    func keys(tenant: String?, address: String) -> TenantKeys {
        // Hash-tagged per tenant ({…}) so a Redis Cluster keeps a tenant's buckets together.
        // Identities are escaped (`keyEscaped`): a tenant named `x}:u:y` cannot share the
        // buckets of user `y}` of tenant `x`, and every key is ASCII.
        if let t = tenant { return tenantKeys.value(for: t) { TenantKeys(prefix + ":{t:" + t.keyEscaped + "}") } }
        return addressKeys.value(for: address) { TenantKeys(prefix + ":{addr:" + address.keyEscaped + "}") }
    }

    static let userScopes = scopes("user")

    public init(limits: LimitsConfiguration, backend: LimitBackend, keyPrefix: String = "portcullis", health: LimiterHealth? = nil) {
        self.limits = limits; self.backend = backend; self.prefix = keyPrefix; self.health = health
        let withoutTier = limits.global.tokensPerMinute != nil || limits.global.tokensPerDay != nil
            || limits.perUser.tokensPerMinute != nil || limits.perUser.tokensPerDay != nil
        var ts: [String: TierLimits] = [:]
        for (name, rates) in limits.tiers { ts[name] = TierLimits(name: name, rates: rates, needsTokensWithoutTier: withoutTier) }
        tiers = ts
        defaultTier = limits.defaultTier.flatMap { ts[$0] }
        needsTokensWithoutTier = withoutTier
    }

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        guard let route = ctx.route, route !== ctx.configuration.modelListRoute else { return .next }
        let plan = buckets(ctx)
        guard !plan.requests.isEmpty || plan.slot != nil else { return .next }
        if plan.slot == nil, let result = backend.acquireNow(plan.requests) {
            return decide(result, plan, ctx)             // the memory store: no closure, no suspension
        }
        var immediate: MiddlewareDecision?
        var resumer: PipelineResumer?
        func finish(_ d: MiddlewareDecision) { if let r = resumer { r.resume(d) } else { immediate = d } }
        let admitBuckets = { [unowned self] in
            guard !plan.requests.isEmpty else { return finish(self.decide(.admitted([]), plan, ctx)) }
            self.backend.acquire(plan.requests) { result in
                if case .admitted = result {} else if let s = plan.slot { self.backend.releaseSlot(s) }
                finish(self.decide(result, plan, ctx))
            }
        }
        if let slot = plan.slot {
            // The concurrency slot first: a refused bucket then gives it back (nothing is debited
            // for a request that is refused).
            backend.acquireSlot(slot) { [unowned self] ok in
                switch ok {
                case true?: admitBuckets()
                case false?:
                    self.health?.countLimited(scope: slot.scope, kind: "streams")
                    ctx.limitOutcome = "rate_limited:" + String(slot.scope.map { $0 == " " ? "_" : $0 })
                    finish(.respond(LocalResponse(.tooManyRequests(
                        "Too many concurrent streams for \(slot.scope): limit \(slot.max). Retry when one ends.", retryAfterSeconds: 1))))
                case nil:
                    finish(self.decide(.unavailable("redis"), plan, ctx))
                }
            }
        } else {
            admitBuckets()
        }
        if let d = immediate { return d }
        resumer = ctx.suspend()
        return .suspend
    }

    struct Plan {
        /// The caller's buckets at this request's estimate (an empty set: no bucket applies).
        var requests: BucketList
        var prompt: Int64 = 0
        var slot: SlotRequest?

        func report(_ statuses: BucketStatuses) -> RateLimitReport { RateLimitReport(set: requests.bucketSet, statuses: statuses) }
    }

    /// The buckets of one request: the caller's set (see `bucketSet`) at the request's estimate.
    func buckets(_ ctx: RequestContext) -> Plan {
        // The last caller's again: its values passed as it holds them, unretained (a tuple
        // returned would retain each, and release it after). `lastCaller` is replaced only by
        // `bucketsOfNewCaller`, which this branch does not reach.
        if let c = ctx.caller, lastCaller?.caller === c {
            return withUnretained(lastCaller) { l in
                guard let l else { return bucketsOfNewCaller(ctx) }
                return buckets(ctx, tier: l.tier, tenant: l.tenant, set: l.set)
            }
        }
        return bucketsOfNewCaller(ctx)
    }

    /// A caller other than the last: its tier's limits, keys and bucket set looked up, and kept
    /// as `lastCaller` when it is a verified identity.
    private func bucketsOfNewCaller(_ ctx: RequestContext) -> Plan {
        let tier = tierLimits(ctx.tier)
        let tenant = keys(tenant: ctx.tenant, address: ctx.clientAddress)
        let set = bucketSet(tenant, tier: tier, user: ctx.user)
        if let c = ctx.caller { lastCaller = CallerState(caller: c, tier: tier, tenant: tenant, set: set) }
        return buckets(ctx, tier: tier, tenant: tenant, set: set)
    }

    private func buckets(_ ctx: RequestContext, tier: TierLimits?, tenant: TenantKeys, set: BucketSet) -> Plan {
        let needsTokens = tier?.needsTokens ?? needsTokensWithoutTier
        var estimate: Int64 = 0, prompt: Int64 = 0
        if needsTokens || tier?.rates.maxTokensCap != nil {
            let (p, completion) = prepareBody(ctx, cap: tier?.rates.maxTokensCap, wantUsage: needsTokens)
            prompt = p
            estimate = p + completion
        }
        var p = Plan(requests: BucketList(set, estimate: estimate), prompt: prompt)
        if let t = tier, let max = t.rates.maxConcurrentStreams, Self.isStream(ctx) {
            let lease = Int64((ctx.route?.timeouts.total.milliseconds ?? 600_000) + 30_000)
            p.slot = SlotRequest(key: tenant.streams, max: max, leaseMillis: lease,
                                 member: ctx.requestID.description + "-" + Self.instance, scope: t.scopes.streams)
        }
        return p
    }

    /// What the limiter derives from a caller: its tier's limits, its tenant's keys, its bucket
    /// set. Kept for the last verified caller (`RequestContext.caller`, held so the same object
    /// is the same caller): a run of its requests skips the three lookups.
    final class CallerState {
        let caller: AnyObject
        let tier: TierLimits?
        let tenant: TenantKeys
        let set: BucketSet
        init(caller: AnyObject, tier: TierLimits?, tenant: TenantKeys, set: BucketSet) {
            self.caller = caller; self.tier = tier; self.tenant = tenant; self.set = set
        }
    }
    var lastCaller: CallerState?

    /// The buckets a caller's requests touch under `tier`: kept with the caller (the user's
    /// entry, or the tenant's for requests without a limited user) and built again only when
    /// the caller's tier changes.
    func bucketSet(_ tenant: TenantKeys, tier: TierLimits?, user: String?) -> BucketSet {
        guard let u = user, !limits.perUser.isEmpty else {
            return tenant.set.value(for: tier) { makeSet(tenant, tier: tier, user: nil) }
        }
        let keys = tenant.user(u, rates: limits.perUser)
        return keys.set.value(for: tier) { makeSet(tenant, tier: tier, user: keys.buckets) }
    }

    /// In a fixed order (global, tenant, user). The tenant's buckets are the ones reported, else
    /// the first of each kind.
    func makeSet(_ tenant: TenantKeys, tier: TierLimits?, user: ScopeBuckets?) -> BucketSet {
        var buckets: [Bucket] = []
        var requestsBucket: Int?, tokensBucket: Int?
        func add(_ b: ScopeBuckets, reportable: Bool) {
            if let r = b.rpm {
                if reportable || requestsBucket == nil { requestsBucket = buckets.count }
                buckets.append(r)
            }
            if let t = b.tpm {
                if reportable || tokensBucket == nil { tokensBucket = buckets.count }
                buckets.append(t)
            }
            if let d = b.tpd {
                if tokensBucket == nil { tokensBucket = buckets.count }
                buckets.append(d)
            }
        }
        if !limits.global.isEmpty { add(globalBuckets, reportable: false) }
        if let t = tier { add(tenant.tier(t), reportable: true) }
        if let u = user { add(u, reportable: false) }
        return BucketSet(buckets: buckets, requestsBucket: requestsBucket, tokensBucket: tokensBucket)
    }

    /// Distinguishes this process's slot leases from other instances' (same request ids).
    static let instance = String(UInt64.random(in: 1...UInt64.max), radix: 36)

    /// Whether the body asks for a stream (`"stream": true` at the top level).
    static func isStream(_ ctx: RequestContext) -> Bool {
        guard let s = try? ctx.bodyMembers() else { return false }
        return isStream(ctx.body, scan: s)
    }

    /// `isStream` for a body whose scan the caller holds.
    static func isStream(_ body: [UInt8], scan s: JSONReader.TopLevelScan) -> Bool {
        guard let r = s.member(RequestContext.BodyMember.stream) else { return false }
        return body[r].elementsEqual("true".utf8)
    }

    /// Prompt bytes / 4, and the completion the request may ask for (its `max_tokens` or
    /// `max_completion_tokens`, bounded by the tier's cap; the cap when it names none). The
    /// body is edited in place of those members only: a `max_tokens` above the cap is clamped
    /// (the response says so in `x-portcullis-max-tokens-clamped`), and when token usage is to
    /// be settled a streaming request gets `stream_options.include_usage` (the provider reports
    /// usage only then; the extra chunk is hidden from a client that did not ask for it).
    func prepareBody(_ ctx: RequestContext, cap: Int?, wantUsage: Bool) -> (prompt: Int64, completion: Int64) {
        let body = ctx.body
        var completion: Int64 = Int64(cap ?? 0)
        let prompt = Int64((body.count + 3) / 4)
        guard let s = try? ctx.bodyMembers() else { return (prompt, completion) }
        var edits = JSONMemberEdits(original: body, objectHasMembers: !s.isEmpty)
        var edited = false
        for i in RequestContext.BodyMember.maxTokens...RequestContext.BodyMember.maxCompletionTokens {
            guard let r = s.member(i) else { continue }
            guard let n = DecimalDigits.value(body[r], maxDigits: 12) else { continue }
            if let c = cap, n > Int64(c) {
                edits.replace(r, with: Array(String(c).utf8))
                edited = true
                ctx.responseHeaderLines += Array("x-portcullis-max-tokens-clamped: \(c)\r\n".utf8)
            }
            completion = cap.map { min(n, Int64($0)) } ?? n
        }
        if wantUsage, Self.isStream(body, scan: s), requestUsageChunk(body, scan: s, into: &edits) {
            edited = true
            ctx.hideStreamUsage = true
        }
        if edited { ctx.body = edits.render(slot: []) }
        return (prompt, completion)
    }

    /// Adds the edit that makes a streaming request ask for the usage chunk
    /// (`stream_options.include_usage: true`); false when it already does or cannot be edited.
    func requestUsageChunk(_ body: [UInt8], scan s: JSONReader.TopLevelScan, into edits: inout JSONMemberEdits) -> Bool {
        guard let r = s.member(RequestContext.BodyMember.streamOptions) else {
            edits.insert("stream_options", at: s.afterBrace, value: Array("{\"include_usage\":true}".utf8))
            return true
        }
        guard body[r.lowerBound] == UInt8(ascii: "{"),                     // not an object: the provider judges it
              let inner = body.withUnsafeBytes({ b in try? JSONReader.topLevelMembers(["include_usage"], in: UnsafeRawBufferPointer(rebasing: b[r])) })
        else { return false }
        if let u = inner.member(0) {
            let v = (r.lowerBound + u.lowerBound)..<(r.lowerBound + u.upperBound)
            if body[v].elementsEqual("true".utf8) { return false }
            edits.replace(v, with: Array("true".utf8))
            return true
        }
        let at = r.lowerBound + inner.afterBrace
        var value = Array(body[r.lowerBound..<at]) + Array("\"include_usage\":true".utf8)
        value += inner.isEmpty ? [] : [UInt8(ascii: ",")]
        value += body[at..<r.upperBound]
        edits.replace(r, with: value)
        return true
    }

    func decide(_ result: AdmissionResult, _ p: Plan, _ ctx: RequestContext) -> MiddlewareDecision {
        switch result {
        case .admitted(let statuses):
            // One object per admitted request: its settlement, and its x-ratelimit lines (written
            // into the response head when there is one: no bytes of their own before).
            let r = LimitReservation(backend: backend, buckets: p.requests, promptEstimate: p.prompt, slot: p.slot,
                                     statuses: statuses)
            ctx.responseHeaderSource = r
            if p.requests.bucketSet.countsTokens || p.slot != nil { ctx.settlement = r }
            return .next
        case .denied(let i, let wait, let statuses):
            let r = p.requests[i]
            let seconds = Int((wait + 999) / 1000)
            let what = r.kind == .requests ? "requests" : "tokens"
            let message = r.cost > r.capacity
                ? "This request needs about \(r.cost) tokens, more than the \(r.scope) limit of \(r.capacity) allows."
                : "Rate limit reached for \(r.scope): limit \(r.capacity) \(what). Retry after \(seconds)s."
            var resp = LocalResponse(.tooManyRequests(message, retryAfterSeconds: seconds))
            for (n, v) in p.report(statuses).headers() { resp.headers.append((n, v)) }
            ctx.limitOutcome = "rate_limited:" + String(r.scope.map { $0 == " " ? "_" : $0 })
            health?.countLimited(scope: r.scope, kind: r.kind.rawValue)
            return .respond(resp)
        case .unavailable(let why):
            return .respond(LocalResponse(.overloaded("Rate limits cannot be checked now (\(why)); try again shortly.")))
        }
    }
}

/// A bounded cache of values derived from a string (bucket keys), with the last entry at hand:
/// a run of one caller's requests costs one string comparison and no hashing. Cleared when it
/// holds `limit` entries (the values are cheap to derive again). Keys are compared as bytes
/// (`ByteKey`): two identities that are canonically equivalent Strings but different bytes
/// are two entries. Loop thread only.
struct RecentKeys<Value> {
    let limit: Int
    private var entries: [ByteKey: Value] = [:]
    /// The last key asked for and its value, in two fields: the hit test reads the key where it
    /// is stored (an optional pair bound with `if let` is copied, a retain for each part).
    private var lastKey = ""
    private var lastValue: Value?

    init(limit: Int) { self.limit = limit }

    mutating func value(for key: String, derive: () -> Value) -> Value {
        if lastKey.sameUTF8(key), let v = lastValue { return v }
        let v: Value
        if let known = entries[ByteKey(key)] { v = known } else {
            if entries.count >= limit { entries.removeAll() }
            v = derive()
            entries[ByteKey(key)] = v
        }
        lastKey = key; lastValue = v
        return v
    }
}
