import PortcullisCore
import PortcullisHTTP
import PortcullisConfig
import PortcullisPipeline
import PortcullisJSON
#if canImport(Glibc)
import Glibc
#endif

/// The fourth pipeline stage: turns a model alias into a `RoutePlan`.
///
/// The alias comes from the route (`alias:`) or the body's `"model"`. The caller's **verified**
/// tier picks the alias's tier list (a route with `tier:` admits only that tier: a route never
/// raises a caller's tier); the sticky weighted choice orders it; the alias's fallback follows.
/// The body is read once (strict JSON) and kept as edits: `model` becomes a slot filled per
/// attempt, `max_tokens` is clamped to the tier's cap; every other byte goes as sent.
/// Also answers `GET /v1/models` with the aliases the caller's tier may use.
/// One instance per worker; no per-request state of its own (a one-entry lookup cache).
public final class AliasRouterMiddleware: Middleware {
    public let name = "alias-router"
    public init() {}

    /// An alias's tier list for a caller's tier, and whether that tier may use the alias.
    final class TierChoice {
        let alias: ModelAlias
        let tier: String?
        let chosenTier: String
        let targets: [ModelTarget]
        let permitted: Bool
        init(alias: ModelAlias, tier: String?, chosenTier: String, targets: [ModelTarget], permitted: Bool) {
            self.alias = alias; self.tier = tier; self.chosenTier = chosenTier; self.targets = targets; self.permitted = permitted
        }

        /// The plan of every request this choice serves when its list has one target (nothing to
        /// split: the order is the same for every caller), made at its first request.
        private var sharedPlan: RoutePlan?
        func unsplitPlan() -> RoutePlan? {
            guard targets.count == 1 else { return nil }
            if let p = sharedPlan { return p }
            let p = plan(candidates: targets)
            sharedPlan = p
            return p
        }

        /// A plan trying `first` in its order, then the alias's fallback (no target twice).
        func plan(candidates first: [ModelTarget]) -> RoutePlan {
            var candidates = first
            for t in alias.fallback where !candidates.contains(where: { $0.index == t.index }) { candidates.append(t) }
            return RoutePlan(alias: alias.name, tier: chosenTier, candidates: candidates, retryOn: alias.retryOn,
                             maxAttempts: alias.maxAttempts)
        }
    }
    /// The last request's choice: a run of one caller's requests (same alias, same tier bytes)
    /// skips the lookups. The instance belongs to one worker's generation, whose configuration
    /// the choice came from; loop thread only.
    private var lastChoice: TierChoice?

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        guard let route = ctx.route else { return .next }
        let configuration = ctx.configuration
        if route === configuration.modelListRoute { return .respond(Self.modelList(configuration.models, tier: ctx.tier)) }
        guard route.usesAliases else { return .next }
        switch plan(ctx, route, configuration) {
        case .success(let (p, body)):
            ctx.plan = p
            ctx.routedBody = body
            return .next
        case .failure(.passthrough):
            return .next
        case .failure(.refused(let e)):
            return .respond(LocalResponse(e))
        }
    }

    enum Refusal: Error { case passthrough, refused(GatewayError) }

    /// Takes the configuration (a class), not its `models` struct: a struct argument would be
    /// copied out of it, a retain and a release for each of its collections, per request.
    func plan(_ ctx: RequestContext, _ route: RouteConfiguration, _ configuration: GatewayConfiguration)
        -> Result<(RoutePlan, JSONMemberEdits), Refusal> {
        // (the limiter may have scanned this body already: one scan per version of the body)
        let scan: JSONReader.TopLevelScan
        do { scan = try ctx.bodyMembers() } catch {
            if route.passthroughModels { return .failure(.passthrough) }
            return .failure(.refused(.badRequest("The request body is not a valid JSON object: \(error.description).")))
        }
        var alias: ModelAlias
        if let a = route.alias {
            alias = a
        } else {
            guard let r = scan.member(RequestContext.BodyMember.model) else {
                if route.passthroughModels { return .failure(.passthrough) }
                return .failure(.refused(.badRequest("The request body has no \"model\".")))
            }
            if let a = Self.configuredAlias(at: r, in: ctx.body, configuration) {
                alias = a           // the usual case: a plain string naming an alias, matched on its bytes
            } else {
                guard let model = ctx.body.withUnsafeBytes({ JSONReader.stringValue(r, in: $0) }) else {
                    return .failure(.refused(.badRequest("\"model\" must be a string.")))
                }
                guard let a = configuration.models.aliases[model] else {
                    if route.passthroughModels { return .failure(.passthrough) }
                    return .failure(.refused(.modelNotFound("The model '\(String(model.prefix(100)))' does not exist.")))
                }
                alias = a
            }
        }
        if let required = route.tier, ctx.tier != required {
            return .failure(.refused(.forbidden("This route serves the '\(required)' tier only.")))
        }
        guard let chosen = choice(alias, tier: ctx.tier, configuration), chosen.permitted else {
            return .failure(.refused(.forbidden("Your tier ('\(ctx.tier ?? "none")') has no access to the model '\(alias.name)'.")))
        }

        var edits = JSONMemberEdits(original: ctx.body, objectHasMembers: !scan.isEmpty)
        if let r = scan.member(RequestContext.BodyMember.model) { edits.replace(r, with: nil) } else { edits.insert("model", at: scan.afterBrace, value: nil) }
        if !configuration.models.tiers.isEmpty, let cap = configuration.models.tiers[ctx.tier ?? chosen.chosenTier]?.maxTokensCap {
            var present = false
            for i in RequestContext.BodyMember.maxTokens...RequestContext.BodyMember.maxCompletionTokens {
                guard let r = scan.member(i) else { continue }
                present = true
                guard let n = DecimalDigits.value(ctx.body[r], maxDigits: 12) else {
                    return .failure(.refused(.badRequest("\"\(RequestContext.bodyNames.strings[i])\" must be a non-negative integer.")))
                }
                if n > cap {
                    if route.maxTokensPolicy == .reject {
                        return .failure(.refused(.badRequest("\"\(RequestContext.bodyNames.strings[i])\" is \(n); your tier allows at most \(cap).")))
                    }
                    edits.replace(r, with: Array(String(cap).utf8))
                }
            }
            if !present { edits.insert("max_tokens", at: scan.afterBrace, value: Array(String(cap).utf8)) }
        }

        // One target: nothing to split, the choice's own plan. Several: the caller's sticky
        // weighted order, a plan of this request's.
        if let shared = chosen.unsplitPlan() { return .success((shared, edits)) }
        var candidates: [ModelTarget] = []
        candidates.reserveCapacity(chosen.targets.count + alias.fallback.count)
        let key = StickyChooser.callerHash(tenant: ctx.tenant, user: ctx.user, fallback: ctx.clientAddress)
        for i in StickyChooser.order(chosen.targets, keyHash: key) where !candidates.contains(where: { $0.index == chosen.targets[i].index }) {
            candidates.append(chosen.targets[i])
        }
        return .success((chosen.plan(candidates: candidates), edits))
    }

    /// The alias a JSON string value at `range` names when it has no escapes (no String is built,
    /// nothing hashed); nil otherwise, and the caller decodes the string the slow way.
    static func configuredAlias(at range: Range<Int>, in body: [UInt8], _ configuration: GatewayConfiguration) -> ModelAlias? {
        body.withUnsafeBytes { b -> ModelAlias? in
            guard range.count >= 2, b[range.lowerBound] == 0x22, let base = b.baseAddress else { return nil }
            let inner = UnsafeRawBufferPointer(start: base + range.lowerBound + 1, count: range.count - 2)
            if inner.count > 0, memchr(base + range.lowerBound + 1, 0x5C, inner.count) != nil { return nil }
            return configuration.models.alias(utf8: inner)
        }
    }

    /// The alias's tier list for `tier` and whether `tier` may use the alias (nil: the alias has
    /// no list for it): the last request's choice when alias and tier bytes are the same.
    func choice(_ alias: ModelAlias, tier: String?, _ configuration: GatewayConfiguration) -> TierChoice? {
        if let c = lastChoice, c.alias === alias, c.tier.sameUTF8(tier) { return c }
        guard let list = alias.targets(forTier: tier) else { return nil }
        let c = TierChoice(alias: alias, tier: tier, chosenTier: list.tier, targets: list.targets,
                           permitted: configuration.models.permits(tier: tier, chosenTier: list.tier, alias: alias))
        lastChoice = c
        return c
    }

    /// `GET /v1/models` in OpenAI's list format: the aliases this caller's tier may use.
    static func modelList(_ models: ModelsConfiguration, tier: String?) -> LocalResponse {
        var s = "{\"object\":\"list\",\"data\":["
        for (i, a) in models.aliases(visibleTo: tier).enumerated() {
            if i > 0 { s += "," }
            s += "{\"id\":\(JSONWriter.quoted(a.name)),\"object\":\"model\",\"created\":0,\"owned_by\":\"portcullis\"}"
        }
        s += "]}"
        return LocalResponse(status: 200, headers: [("content-type", "application/json")], body: Array(s.utf8))
    }
}
