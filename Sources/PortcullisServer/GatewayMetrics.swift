import Synchronization
import PortcullisCore
import PortcullisRouter

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

/// Everything one finished request contributes to the access log and the metrics.
struct RequestSummary {
    var requestID = "-"
    var client = ""
    var method = "-"
    var path = "-"
    var route: String?
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
    var attempts: [(provider: String, failure: RouterMetrics.FailureKind?)] = []
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

/// One worker's counters. Written only by its worker (one uncontended lock per finished
/// request, none on the byte path), read when any worker renders `/metrics` (the shards are
/// merged then). No atomics shared between workers on the request path.
final class MetricsShard: Sendable {
    struct RequestKey: Hashable { let route: String; let statusClass: Int; let outcome: RequestOutcome }
    struct TokenKey: Hashable { let tenant: String; let model: String }
    struct FailureKey: Hashable { let provider: String; let kind: RouterMetrics.FailureKind }

    struct State {
        var requests: [RequestKey: Int] = [:]
        var duration = LatencyHistogram()
        var ttfb = LatencyHistogram()
        var tokens: [TokenKey: (prompt: Int64, completion: Int64)] = [:]
        var attempts: [String: Int] = [:]
        var failures: [FailureKey: Int] = [:]
        var openConnections = 0
        var openStreams = 0
        var rejectedConnections = 0
        var accessLogDropped = 0
        /// Tenant → its label (itself, or "other" past `metrics.max_tenants`); a cache of the
        /// process-wide decision.
        var tenantLabels: [String: String] = [:]
    }

    let state = Mutex(State())
    let labels: TenantLabels

    init(labels: TenantLabels) { self.labels = labels }

    func record(_ r: RequestSummary, tenantLabels: Bool) {
        // The tenant's label is decided outside this shard's lock (the process-wide set has its own).
        let hasTokens = r.model != nil && (r.promptTokens != nil || r.completionTokens != nil)
        let tenantLabel = hasTokens && tenantLabels ? label(for: r.tenant ?? "-") : "-"
        state.withLock { s in
            s.requests[RequestKey(route: r.route ?? "-", statusClass: r.status / 100, outcome: r.outcome), default: 0] += 1
            s.duration.observe(nanos: r.durationNanos)
            if let t = r.ttfbNanos { s.ttfb.observe(nanos: t) }
            if let model = r.model, r.promptTokens != nil || r.completionTokens != nil {
                let k = TokenKey(tenant: tenantLabel, model: model)
                let old = s.tokens[k] ?? (0, 0)
                s.tokens[k] = (old.prompt + (r.promptTokens ?? 0), old.completion + (r.completionTokens ?? 0))
            }
            for a in r.attempts {
                s.attempts[a.provider, default: 0] += 1
                if let f = a.failure { s.failures[FailureKey(provider: a.provider, kind: f), default: 0] += 1 }
            }
        }
    }

    private func label(for tenant: String) -> String {
        if let l = state.withLock({ $0.tenantLabels[tenant] }) { return l }
        let l = labels.admit(tenant) ? tenant : "other"
        state.withLock { s in
            if s.tenantLabels.count > 4 * labels.max + 1024 { s.tenantLabels.removeAll() }
            s.tenantLabels[tenant] = l
        }
        return l
    }

    func update(_ body: (inout State) -> Void) { state.withLock { body(&$0) } }
}

/// The tenants given their own label, process-wide, first come first served up to `max`
/// (the rest are `other`): a label, once given, stays for the life of the process.
final class TenantLabels: Sendable {
    let max: Int
    private let admitted = Mutex<Set<String>>([])
    init(max: Int) { self.max = max }

    func admit(_ tenant: String) -> Bool {
        admitted.withLock { set in
            if set.contains(tenant) { return true }
            guard set.count < max else { return false }
            set.insert(tenant)
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
        var all = MetricsShard.State()
        for sh in shards {
            let s = sh.state.withLock { $0 }
            for (k, v) in s.requests { all.requests[k, default: 0] += v }
            all.duration.merge(s.duration)
            all.ttfb.merge(s.ttfb)
            for (k, v) in s.tokens {
                let o = all.tokens[k] ?? (0, 0)
                all.tokens[k] = (o.prompt + v.prompt, o.completion + v.completion)
            }
            for (k, v) in s.attempts { all.attempts[k, default: 0] += v }
            for (k, v) in s.failures { all.failures[k, default: 0] += v }
            all.openConnections += s.openConnections
            all.openStreams += s.openStreams
            all.rejectedConnections += s.rejectedConnections
            all.accessLogDropped += s.accessLogDropped
        }
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) { out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" }
        family("portcullis_requests_total", "counter", "Requests answered, by route, status class and outcome.")
        for (k, v) in all.requests.sorted(by: { ($0.key.route, $0.key.statusClass, $0.key.outcome.rawValue) < ($1.key.route, $1.key.statusClass, $1.key.outcome.rawValue) }) {
            out += "portcullis_requests_total{route=\"\(Self.escape(k.route))\",class=\"\(k.statusClass)xx\",outcome=\"\(k.outcome.rawValue)\"} \(v)\n"
        }
        family("portcullis_request_duration_seconds", "histogram", "Time from a request's first byte to its response's last.")
        all.duration.render("portcullis_request_duration_seconds", into: &out)
        family("portcullis_time_to_first_byte_seconds", "histogram", "Time from a proxied request's first byte to its response head.")
        all.ttfb.render("portcullis_time_to_first_byte_seconds", into: &out)
        family("portcullis_upstream_attempts_total", "counter", "Upstream attempts, by provider.")
        for (p, v) in all.attempts.sorted(by: { $0.key < $1.key }) { out += "portcullis_upstream_attempts_total{provider=\"\(Self.escape(p))\"} \(v)\n" }
        family("portcullis_upstream_failures_total", "counter", "Failed upstream attempts, by provider and kind.")
        for (k, v) in all.failures.sorted(by: { ($0.key.provider, $0.key.kind.label) < ($1.key.provider, $1.key.kind.label) }) {
            out += "portcullis_upstream_failures_total{provider=\"\(Self.escape(k.provider))\",kind=\"\(k.kind.label)\"} \(v)\n"
        }
        family("portcullis_tokens_total", "counter", "LLM tokens the providers reported, by tenant (capped by metrics.max_tenants; the rest are \"other\") and model.")
        for (k, v) in all.tokens.sorted(by: { ($0.key.tenant, $0.key.model) < ($1.key.tenant, $1.key.model) }) {
            let l = "tenant=\"\(Self.escape(k.tenant))\",model=\"\(Self.escape(k.model))\""
            out += "portcullis_tokens_total{\(l),type=\"prompt\"} \(v.prompt)\nportcullis_tokens_total{\(l),type=\"completion\"} \(v.completion)\n"
        }
        family("portcullis_open_connections", "gauge", "Client connections open now.")
        out += "portcullis_open_connections \(all.openConnections)\n"
        family("portcullis_open_streams", "gauge", "Event streams being relayed now.")
        out += "portcullis_open_streams \(all.openStreams)\n"
        family("portcullis_rejected_connections_total", "counter", "Connections refused over max_connections.")
        out += "portcullis_rejected_connections_total \(all.rejectedConnections)\n"
        family("portcullis_access_log_dropped_total", "counter", "Access-log lines dropped because stdout was not keeping up.")
        out += "portcullis_access_log_dropped_total \(all.accessLogDropped)\n"
        family("portcullis_config_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.")
        out += "portcullis_config_reloads_total{result=\"ok\"} \(reloadsOK.load(ordering: .relaxed))\n"
        out += "portcullis_config_reloads_total{result=\"failed\"} \(reloadsFailed.load(ordering: .relaxed))\n"
        family("portcullis_config_generation", "gauge", "The configuration generation in force (1 at start-up, +1 per reload).")
        out += "portcullis_config_generation \(generation.load(ordering: .relaxed))\n"
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
