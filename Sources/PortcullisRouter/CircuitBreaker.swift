import PortcullisCore
import PortcullisConfig
import Synchronization

/// Per-worker circuit breakers, one per target (indexed by `ModelTarget.index`). Loop thread
/// only: no locks. `failures` consecutive failures open a target for `cooldown`; then exactly one
/// request may probe it (half-open): success closes it, failure re-opens it. A provider's 429
/// with `Retry-After` opens the target for that long (capped).
public final class CircuitBreakers {
    public enum State: Equatable, Sendable {
        case closed(failures: Int)
        case open(until: UInt64)
        case halfOpen(probing: Bool)
    }

    let failureThreshold: Int
    let cooldownNanos: UInt64
    let maxRetryAfterNanos: UInt64
    var states: [State]
    let metrics: RouterMetrics?

    public init(targets: Int, defaults: RoutingDefaults, metrics: RouterMetrics? = nil) {
        failureThreshold = defaults.breakerFailures
        cooldownNanos = defaults.breakerCooldown.nanoseconds
        maxRetryAfterNanos = defaults.maxRetryAfter.nanoseconds
        states = Array(repeating: .closed(failures: 0), count: targets)
        self.metrics = metrics
    }

    public func state(_ target: Int) -> State { states[target] }

    /// Whether a request may be sent to `target` now. An open breaker past its cool-down turns
    /// half-open and admits this one request as the probe.
    public func admit(_ target: Int, now: UInt64) -> Bool {
        guard wouldAdmit(target, now: now) else { return false }
        if case .closed = states[target] { return true }
        states[target] = .halfOpen(probing: true)
        return true
    }

    /// Whether `admit` would let a request through now, without taking the probe.
    public func wouldAdmit(_ target: Int, now: UInt64) -> Bool {
        switch states[target] {
        case .closed: true
        case .open(let until): now >= until
        case .halfOpen(let probing): !probing
        }
    }

    public func recordSuccess(_ target: Int) {
        if case .closed(0) = states[target] { return }
        if isOpenOrHalfOpen(target) { metrics?.breakerClosed(target) }
        states[target] = .closed(failures: 0)
    }

    /// A failed attempt; `retryAfterNanos` (from a 429's `Retry-After`) opens the breaker at once.
    public func recordFailure(_ target: Int, now: UInt64, retryAfterNanos: UInt64? = nil) {
        if let ra = retryAfterNanos, ra > 0 {
            return open(target, until: now &+ min(ra, maxRetryAfterNanos))
        }
        switch states[target] {
        case .closed(let n):
            if n + 1 >= failureThreshold { open(target, until: now &+ cooldownNanos) }
            else { states[target] = .closed(failures: n + 1) }
        case .halfOpen, .open:
            open(target, until: now &+ cooldownNanos)
        }
    }

    /// The probe was abandoned without an answer (the client left): let another request probe.
    public func releaseProbe(_ target: Int) {
        if case .halfOpen(true) = states[target] { states[target] = .halfOpen(probing: false) }
    }

    private func open(_ target: Int, until: UInt64) {
        if !isOpenOrHalfOpen(target) { metrics?.breakerOpened(target) }
        states[target] = .open(until: until)
    }

    private func isOpenOrHalfOpen(_ target: Int) -> Bool {
        if case .closed = states[target] { return false }
        return true
    }
}

/// Per-target counters of **one worker** (its shard), rendered on `/metrics` merged with the
/// other workers' shards (`render(_:)`). Written only by its worker's loop thread, so an
/// update is a plain load and store (relaxed atomics only make the scrape's reads well defined):
/// no read-modify-write shared between workers on the request path.
public final class RouterMetrics: Sendable {
    public let targetIDs: [String]
    /// A single-writer counter (a class: `Atomic` is not copyable, arrays need references).
    final class Counter: Sendable {
        let value = Atomic<Int>(0)
        func add(_ n: Int) { value.store(value.load(ordering: .relaxed) &+ n, ordering: .relaxed) }
        var load: Int { value.load(ordering: .relaxed) }
    }
    let attempts: [Counter]
    let successes: [Counter]
    /// Failures by kind: see `FailureKind`.
    let failures: [[Counter]]
    /// Workers whose breaker for the target is open or half-open now.
    let openBreakers: [Counter]
    let failovers = Counter()

    public enum FailureKind: Int, CaseIterable, Sendable {
        case connect, tls, reset, timeout, badResponse, status, credentials
        public var label: String {
            switch self {
            case .connect: "connect"
            case .tls: "tls"
            case .reset: "reset"
            case .timeout: "timeout"
            case .badResponse: "bad_response"
            case .status: "status"
            case .credentials: "credentials"
            }
        }
    }

    public init(targetIDs: [String]) {
        self.targetIDs = targetIDs
        let n = targetIDs.count
        attempts = (0..<n).map { _ in Counter() }
        successes = (0..<n).map { _ in Counter() }
        failures = (0..<n).map { _ in FailureKind.allCases.map { _ in Counter() } }
        openBreakers = (0..<n).map { _ in Counter() }
    }

    public func attempt(_ t: Int) { attempts[t].add(1) }
    public func success(_ t: Int) { successes[t].add(1) }
    public func failure(_ t: Int, _ kind: FailureKind) { failures[t][kind.rawValue].add(1) }
    public func failover() { failovers.add(1) }
    func breakerOpened(_ t: Int) { openBreakers[t].add(1) }
    func breakerClosed(_ t: Int) { openBreakers[t].add(-1) }

    /// The shards of every worker, summed per target.
    public static func render(_ shards: [RouterMetrics]) -> String {
        guard let first = shards.first, !first.targetIDs.isEmpty else { return "" }
        let ids = first.targetIDs
        func label(_ i: Int) -> String { "target=\"\(ids[i])\"" }
        func sum(_ pick: (RouterMetrics) -> Counter) -> Int { shards.reduce(0) { $0 + pick($1).load } }
        var s = "# HELP portcullis_target_attempts_total Upstream attempts per routing target.\n# TYPE portcullis_target_attempts_total counter\n"
        for i in ids.indices { s += "portcullis_target_attempts_total{\(label(i))} \(sum { $0.attempts[i] })\n" }
        s += "# HELP portcullis_target_successes_total Attempts answered by the target (the response went to the client).\n# TYPE portcullis_target_successes_total counter\n"
        for i in ids.indices { s += "portcullis_target_successes_total{\(label(i))} \(sum { $0.successes[i] })\n" }
        s += "# HELP portcullis_target_failures_total Failed attempts per routing target, by kind.\n# TYPE portcullis_target_failures_total counter\n"
        for i in ids.indices {
            for k in FailureKind.allCases {
                s += "portcullis_target_failures_total{\(label(i)),kind=\"\(k.label)\"} \(sum { $0.failures[i][k.rawValue] })\n"
            }
        }
        s += "# HELP portcullis_target_breaker_open Workers whose circuit breaker for the target is open or half-open.\n# TYPE portcullis_target_breaker_open gauge\n"
        for i in ids.indices { s += "portcullis_target_breaker_open{\(label(i))} \(sum { $0.openBreakers[i] })\n" }
        s += "# HELP portcullis_failovers_total Requests retried on another target.\n# TYPE portcullis_failovers_total counter\n"
        s += "portcullis_failovers_total \(sum { $0.failovers })\n"
        return s
    }

    public func render() -> String { Self.render([self]) }
}
