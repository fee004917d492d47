import Synchronization
import PortcullisCore
import PortcullisRouter
import PortcullisConfig

/// How a request ended, for the access log and `/metrics` (an enum, not a free string; the
/// detail — which limit, which failure — goes in its own field).
enum RequestOutcome: String, CaseIterable, Sendable {
    case ok
    /// The gateway refused the request (400/401/403/404/405/413…).
    case clientError = "client_error"
    case rateLimited = "rate_limited"
    /// The provider answered with an error status (forwarded as is).
    case upstreamStatus = "upstream_status"
    /// No provider answered (connect, TLS, reset, timeout, bad response, open breakers).
    case upstreamError = "upstream_error"
    /// The response broke off after it began (the stream ended with an error event).
    case streamError = "stream_error"
    case clientAbort = "client_abort"
    /// The gateway could not serve it (no credentials, untranslatable, overload, 5xx of its own).
    case gatewayError = "gateway_error"

    /// The enum and detail of the outcome strings the stages record ("rate_limited:<scope>",
    /// "upstream_<label>", "stream_error_<label>", …).
    /// Position in `allCases` (metrics tables).
    static func index(_ o: RequestOutcome) -> Int {
        switch o {
        case .ok: 0
        case .clientError: 1
        case .rateLimited: 2
        case .upstreamStatus: 3
        case .upstreamError: 4
        case .streamError: 5
        case .clientAbort: 6
        case .gatewayError: 7
        }
    }

    static func classify(_ s: String, status: Int) -> (RequestOutcome, String) {
        if s == "ok" { return (status >= 500 ? .gatewayError : status >= 400 ? .clientError : .ok, "") }
        if s.hasPrefix("rate_limited:") { return (.rateLimited, String(s.dropFirst(13))) }
        if s == "upstream_status" { return (.upstreamStatus, "") }
        if s.hasPrefix("stream_error_") { return (.streamError, String(s.dropFirst(13))) }
        if s == "client_abort" { return (.clientAbort, "") }
        if s == "no_healthy_target" { return (.upstreamError, "breakers_open") }
        if s == "upstream_no_credentials" || s.hasPrefix("untranslatable") { return (.gatewayError, s) }
        if s.hasPrefix("upstream_") { return (.upstreamError, String(s.dropFirst(9))) }
        return (status >= 500 ? .gatewayError : .clientError, s == "local_error" ? "" : s)
    }
}

/// Everything one finished request contributes to its access-log line (built only when the log
/// is on; the metrics take the values directly).
struct RequestSummary {
    var requestID = "-"
    var client = ""
    var method = "-"
    var path = "-"
    var route: RouteConfiguration?
    var tenant: String?
    var user: String?
    var alias: String?
    var provider: String?
    var model: String?
    var status = 0
    var outcome = RequestOutcome.ok
    var detail = ""
    var bytes = 0
    var promptTokens: Int64?
    var completionTokens: Int64?
    var ttfbNanos: UInt64?
    var durationNanos: UInt64 = 0
    var attempts: [(provider: ProviderConfiguration, failure: RouterMetrics.FailureKind?)] = []
}

/// Latency histogram with fixed bounds (seconds), Prometheus-style cumulative on render.
struct LatencyHistogram {
    static let bounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
    var counts = [Int](repeating: 0, count: LatencyHistogram.bounds.count + 1)
    var sum = 0.0
    var count = 0

    mutating func observe(nanos: UInt64) {
        let s = Double(nanos) / 1e9
        var i = 0
        while i < Self.bounds.count && s > Self.bounds[i] { i += 1 }
        counts[i] += 1; sum += s; count += 1
    }

    mutating func merge(_ o: LatencyHistogram) {
        for i in counts.indices { counts[i] += o.counts[i] }
        sum += o.sum; count += o.count
    }

    func render(_ name: String, labels: String = "", into out: inout String) {
        var cumulative = 0
        let sep = labels.isEmpty ? "" : labels + ","
        for (i, b) in Self.bounds.enumerated() {
            cumulative += counts[i]
            out += "\(name)_bucket{\(sep)le=\"\(b)\"} \(cumulative)\n"
        }
        out += "\(name)_bucket{\(sep)le=\"+Inf\"} \(count)\n"
        let l = labels.isEmpty ? "" : "{\(labels)}"
        out += "\(name)_sum\(l) \(sum)\n\(name)_count\(l) \(count)\n"
    }
}

/// Counters of one route path in one shard (kept across reloads: keyed by path).
final class RouteCounters {
    static let outcomes = RequestOutcome.allCases
    /// [status class 0…5][outcome]
    var counts = [Int](repeating: 0, count: 6 * RequestOutcome.allCases.count)
}

/// Counters of one provider name in one shard.
final class ProviderCounters {
    var attempts = 0
    var failures = [Int](repeating: 0, count: RouterMetrics.FailureKind.allCases.count)
}

/// One worker's counters. Written only by its worker (one uncontended lock per finished
/// request, none on the byte path), read when any worker renders `/metrics` (the shards are
/// merged then). No atomics shared between workers on the request path; the per-route and
/// per-provider counters are found through the generation's tables (`ShardTables`), so
/// recording hashes no strings except the tenant/model of token counts.
final class MetricsShard: Sendable {
    /// Compared and hashed by bytes (`ByteKey`'s reason): two tenants whose ids are canonically
    /// equivalent Strings but different bytes are two series.
    struct TokenKey: Hashable {
        let tenant: String; let model: String
        static func == (a: TokenKey, b: TokenKey) -> Bool { a.tenant.sameUTF8(b.tenant) && a.model.sameUTF8(b.model) }
        func hash(into h: inout Hasher) { h.combine(ByteKey(tenant)); h.combine(ByteKey(model)) }
    }

    struct State {
        var routes: [String: RouteCounters] = [:]
        var providers: [String: ProviderCounters] = [:]
        var duration = LatencyHistogram()
        var ttfb = LatencyHistogram()
        var tokens: [TokenKey: (prompt: Int64, completion: Int64)] = [:]
        /// The last (tenant, model)'s counts not yet added to `tokens`: consecutive requests
        /// mostly share them, so most records hash nothing (folded in on a change and on a scrape).
        var pendingKey: TokenKey?
        var pendingPrompt: Int64 = 0
        var pendingCompletion: Int64 = 0

        mutating func foldPendingTokens() {
            guard let k = pendingKey else { return }
            let old = tokens[k] ?? (0, 0)
            tokens[k] = (old.prompt + pendingPrompt, old.completion + pendingCompletion)
            pendingKey = nil; pendingPrompt = 0; pendingCompletion = 0
        }
        var openConnections = 0
        var openStreams = 0
        var rejectedConnections = 0
        /// Refused over `server.max_connections_per_client`.
        var rejectedPerClient = 0
        /// `accept` failed for lack of file descriptors (EMFILE/ENFILE); accepting paused.
        var acceptFDExhausted = 0
        /// Streams cut because the client did not read for the route's `idle` timeout.
        var slowClientsCut = 0
        var accessLogDropped = 0
        /// Tenant → its label (itself, or "other" past `metrics.max_tenants`); a cache of the
        /// process-wide decision.
        var tenantLabels: [ByteKey: String] = [:]
        /// The last tenant looked up and its label (a tenant's label never changes: a run of one
        /// tenant's requests skips the hashing).
        var lastTenantID: String?
        var lastTenantLabel = "-"
    }

    /// A generation's routes and providers resolved to this shard's counters (built when a
    /// worker installs the generation; indexed by `RouteConfiguration.index` and
    /// `ProviderConfiguration.ordinal`). Used on the shard's worker only, under the lock.
    final class ShardTables {
        let routes: [RouteCounters]
        let noRoute: RouteCounters
        let providers: [ProviderCounters]
        init(routes: [RouteCounters], noRoute: RouteCounters, providers: [ProviderCounters]) {
            self.routes = routes; self.noRoute = noRoute; self.providers = providers
        }
    }

    let state = Mutex(State())
    let labels: TenantLabels

    init(labels: TenantLabels) { self.labels = labels }

    /// The counters of `c`'s routes (and of `/v1/models`) and providers, created on first use.
    func tables(for c: GatewayConfiguration) -> ShardTables {
        state.withLock { s in
            func route(_ path: String) -> RouteCounters {
                if let r = s.routes[path] { return r }
                let r = RouteCounters(); s.routes[path] = r; return r
            }
            var routes = c.routes.map { route($0.path) }
            routes.append(route(c.modelListRoute?.path ?? "/v1/models"))
            let providers = c.providers.map { p -> ProviderCounters in
                if let x = s.providers[p.name] { return x }
                let x = ProviderCounters(); s.providers[p.name] = x; return x
            }
            return ShardTables(routes: routes, noRoute: route("-"), providers: providers)
        }
    }

    /// One finished request's counts. Takes the values themselves, not a `RequestSummary`: a
    /// request's metrics copy (and retain) none of its strings.
    func record(routeIndex: Int?, status: Int, outcome: RequestOutcome, durationNanos: UInt64, ttfbNanos: UInt64?,
                tenant id: String?, model: String?, promptTokens: Int64?, completionTokens: Int64?,
                attempts: [(provider: ProviderConfiguration, failure: RouterMetrics.FailureKind?)],
                tables t: ShardTables, tenantLabels: Bool) {
        let outcome = RequestOutcome.index(outcome)
        let hasTokens = model != nil && (promptTokens != nil || completionTokens != nil)
        state.withLock { s in
            let rc = routeIndex.map { $0 < t.routes.count ? t.routes[$0] : t.noRoute } ?? t.noRoute
            rc.counts[min(5, max(0, status / 100)) * RequestOutcome.allCases.count + outcome] += 1
            s.duration.observe(nanos: durationNanos)
            if let ttfb = ttfbNanos { s.ttfb.observe(nanos: ttfb) }
            if hasTokens, let model {
                var tenant = "-"
                if tenantLabels, let id {
                    if s.lastTenantID?.sameUTF8(id) == true { tenant = s.lastTenantLabel } else {
                        if let l = s.tenantLabels[ByteKey(id)] { tenant = l } else {
                            tenant = labels.admit(id) ? id : "other"
                            if s.tenantLabels.count > 4 * labels.max + 1024 { s.tenantLabels.removeAll() }
                            s.tenantLabels[ByteKey(id)] = tenant
                        }
                        s.lastTenantID = id; s.lastTenantLabel = tenant
                    }
                }
                if s.pendingKey?.tenant.sameUTF8(tenant) == true && s.pendingKey?.model.sameUTF8(model) == true {} else {
                    s.foldPendingTokens(); s.pendingKey = TokenKey(tenant: tenant, model: model)
                }
                s.pendingPrompt += promptTokens ?? 0
                s.pendingCompletion += completionTokens ?? 0
            }
            for a in attempts where a.provider.ordinal < t.providers.count {
                let pc = t.providers[a.provider.ordinal]
                pc.attempts += 1
                if let f = a.failure { pc.failures[f.rawValue] += 1 }
            }
        }
    }

    func update(_ body: (inout State) -> Void) { state.withLock { body(&$0) } }

    /// A copy of the counters (a scrape).
    func snapshot() -> (routes: [String: [Int]], providers: [String: (Int, [Int])], rest: State) {
        state.withLock { s in
            s.foldPendingTokens()
            return (s.routes.mapValues { $0.counts }, s.providers.mapValues { ($0.attempts, $0.failures) }, s)
        }
    }
}

/// The tenants given their own label, process-wide, first come first served up to `max`
/// (the rest are `other`): a label, once given, stays for the life of the process.
final class TenantLabels: Sendable {
    let max: Int
    private let admitted = Mutex<Set<ByteKey>>([])
    init(max: Int) { self.max = max }

    func admit(_ tenant: String) -> Bool {
        admitted.withLock { set in
            if set.contains(ByteKey(tenant)) { return true }
            guard set.count < max else { return false }
            set.insert(ByteKey(tenant))
            return true
        }
    }
}

/// The process's metrics: one shard per worker plus the few process-level counters (reloads,
/// configuration generation), rendered in the Prometheus text format on `/metrics`.
public final class GatewayMetrics: Sendable {
    let shards: [MetricsShard]
    let reloadsOK = Atomic<Int>(0)
    let reloadsFailed = Atomic<Int>(0)
    /// The configuration generation in force (1 at start-up).
    let generation = Atomic<Int>(1)

    init(workers: Int, maxTenants: Int) {
        let labels = TenantLabels(max: maxTenants)
        shards = (0..<max(1, workers)).map { _ in MetricsShard(labels: labels) }
    }

    func shard(_ i: Int) -> MetricsShard { shards[i % shards.count] }

    func render() -> String {
        var routes: [String: [Int]] = [:]
        var providers: [String: (attempts: Int, failures: [Int])] = [:]
        var all = MetricsShard.State()
        for sh in shards {
            let (r, p, s) = sh.snapshot()
            for (k, v) in r { routes[k] = zip(routes[k] ?? [Int](repeating: 0, count: v.count), v).map { $0 + $1 } }
            for (k, v) in p {
                let o = providers[k] ?? (0, [Int](repeating: 0, count: v.1.count))
                providers[k] = (o.attempts + v.0, zip(o.failures, v.1).map { $0 + $1 })
            }
            all.duration.merge(s.duration)
            all.ttfb.merge(s.ttfb)
            for (k, v) in s.tokens {
                let o = all.tokens[k] ?? (0, 0)
                all.tokens[k] = (o.prompt + v.prompt, o.completion + v.completion)
            }
            all.openConnections += s.openConnections
            all.openStreams += s.openStreams
            all.rejectedConnections += s.rejectedConnections
            all.rejectedPerClient += s.rejectedPerClient
            all.acceptFDExhausted += s.acceptFDExhausted
            all.slowClientsCut += s.slowClientsCut
            all.accessLogDropped += s.accessLogDropped
        }
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) { out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" }
        family("portcullis_requests_total", "counter", "Requests answered, by route, status class and outcome.")
        let outcomes = RequestOutcome.allCases
        for (route, counts) in routes.sorted(by: { $0.key < $1.key }) {
            for (i, n) in counts.enumerated() where n > 0 {
                out += "portcullis_requests_total{route=\"\(Self.escape(route))\",class=\"\(i / outcomes.count)xx\",outcome=\"\(outcomes[i % outcomes.count].rawValue)\"} \(n)\n"
            }
        }
        family("portcullis_request_duration_seconds", "histogram", "Time from a request's first byte to its response's last.")
        all.duration.render("portcullis_request_duration_seconds", into: &out)
        family("portcullis_time_to_first_byte_seconds", "histogram", "Time from a proxied request's first byte to its response head.")
        all.ttfb.render("portcullis_time_to_first_byte_seconds", into: &out)
        family("portcullis_upstream_attempts_total", "counter", "Upstream attempts, by provider.")
        for (p, v) in providers.sorted(by: { $0.key < $1.key }) { out += "portcullis_upstream_attempts_total{provider=\"\(Self.escape(p))\"} \(v.attempts)\n" }
        family("portcullis_upstream_failures_total", "counter", "Failed upstream attempts, by provider and kind.")
        for (p, v) in providers.sorted(by: { $0.key < $1.key }) {
            for k in RouterMetrics.FailureKind.allCases where v.failures[k.rawValue] > 0 {
                out += "portcullis_upstream_failures_total{provider=\"\(Self.escape(p))\",kind=\"\(k.label)\"} \(v.failures[k.rawValue])\n"
            }
        }
        family("portcullis_tokens_total", "counter", "LLM tokens the providers reported, by tenant (capped by metrics.max_tenants; the rest are \"other\") and model.")
        for (k, v) in all.tokens.sorted(by: { ($0.key.tenant, $0.key.model) < ($1.key.tenant, $1.key.model) }) {
            let l = "tenant=\"\(Self.escape(k.tenant))\",model=\"\(Self.escape(k.model))\""
            out += "portcullis_tokens_total{\(l),type=\"prompt\"} \(v.prompt)\nportcullis_tokens_total{\(l),type=\"completion\"} \(v.completion)\n"
        }
        /// A family with one unlabelled sample, or one sample per label value.
        func single(_ name: String, _ type: String, _ help: String, _ samples: [(String, Int)]) {
            family(name, type, help)
            for (labels, v) in samples { out += labels.isEmpty ? "\(name) \(v)\n" : "\(name){\(labels)} \(v)\n" }
        }
        single("portcullis_open_connections", "gauge", "Client connections open now.", [("", all.openConnections)])
        single("portcullis_open_streams", "gauge", "Event streams being relayed now.", [("", all.openStreams)])
        single("portcullis_rejected_connections_total", "counter", "Connections refused, by limit.",
               [("limit=\"max_connections\"", all.rejectedConnections), ("limit=\"max_connections_per_client\"", all.rejectedPerClient)])
        single("portcullis_accept_fd_exhausted_total", "counter",
               "Times accept failed for lack of file descriptors (accepting paused 100 ms each time).", [("", all.acceptFDExhausted)])
        single("portcullis_slow_clients_cut_total", "counter",
               "Streams cut because the client did not read for the route's idle timeout.", [("", all.slowClientsCut)])
        single("portcullis_access_log_dropped_total", "counter",
               "Access-log lines dropped because stdout was not keeping up.", [("", all.accessLogDropped)])
        single("portcullis_config_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.",
               [("result=\"ok\"", reloadsOK.load(ordering: .relaxed)), ("result=\"failed\"", reloadsFailed.load(ordering: .relaxed))])
        single("portcullis_config_generation", "gauge", "The configuration generation in force (1 at start-up, +1 per reload).",
               [("", generation.load(ordering: .relaxed))])
        return out
    }

    /// A label value in the exposition format (backslash, quote and newline escaped).
    static func escape(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == 0x5C || $0 == 0x22 || $0 == 0x0A }) else { return s }
        var o = ""
        for c in s {
            switch c {
            case "\\": o += "\\\\"
            case "\"": o += "\\\""
            case "\n": o += "\\n"
            default: o.append(c)
            }
        }
        return o
    }
}
