import Synchronization

/// Process-wide counters, updated by every worker with relaxed atomics and rendered in the
/// Prometheus text format on `/metrics`.
public final class GatewayMetrics: Sendable {
    public init() {}

    let requests = Atomic<Int>(0)
    let responses2xx = Atomic<Int>(0)
    let responses3xx = Atomic<Int>(0)
    let responses4xx = Atomic<Int>(0)
    let responses5xx = Atomic<Int>(0)
    let upstreamFailures = Atomic<Int>(0)
    /// Responses that began streaming and then failed (counted as errors, never as successes).
    let streamErrors = Atomic<Int>(0)
    let clientAborts = Atomic<Int>(0)
    let openConnections = Atomic<Int>(0)
    let rejectedConnections = Atomic<Int>(0)
    let reloadsOK = Atomic<Int>(0)
    let reloadsFailed = Atomic<Int>(0)
    /// The configuration generation in force (1 at start-up).
    let generation = Atomic<Int>(1)

    func countResponse(status: Int) {
        switch status {
        case 200..<300: responses2xx.add(1, ordering: .relaxed)
        case 300..<400: responses3xx.add(1, ordering: .relaxed)
        case 400..<500: responses4xx.add(1, ordering: .relaxed)
        default: responses5xx.add(1, ordering: .relaxed)
        }
    }

    func render() -> String {
        func v(_ a: borrowing Atomic<Int>) -> Int { a.load(ordering: .relaxed) }
        return """
        # HELP portcullis_requests_total Requests received.
        # TYPE portcullis_requests_total counter
        portcullis_requests_total \(v(requests))
        # HELP portcullis_responses_total Responses sent, by status class.
        # TYPE portcullis_responses_total counter
        portcullis_responses_total{class="2xx"} \(v(responses2xx))
        portcullis_responses_total{class="3xx"} \(v(responses3xx))
        portcullis_responses_total{class="4xx"} \(v(responses4xx))
        portcullis_responses_total{class="5xx"} \(v(responses5xx))
        # HELP portcullis_upstream_failures_total Upstream exchanges that failed (connect, reset, timeout, bad response).
        # TYPE portcullis_upstream_failures_total counter
        portcullis_upstream_failures_total \(v(upstreamFailures))
        # HELP portcullis_stream_errors_total Responses that failed after streaming began.
        # TYPE portcullis_stream_errors_total counter
        portcullis_stream_errors_total \(v(streamErrors))
        # HELP portcullis_client_aborts_total Requests whose client disconnected before the response ended.
        # TYPE portcullis_client_aborts_total counter
        portcullis_client_aborts_total \(v(clientAborts))
        # HELP portcullis_open_connections Client connections open now.
        # TYPE portcullis_open_connections gauge
        portcullis_open_connections \(v(openConnections))
        # HELP portcullis_rejected_connections_total Connections refused over max_connections.
        # TYPE portcullis_rejected_connections_total counter
        portcullis_rejected_connections_total \(v(rejectedConnections))
        # HELP portcullis_config_reloads_total Configuration reloads (SIGHUP), by result.
        # TYPE portcullis_config_reloads_total counter
        portcullis_config_reloads_total{result="ok"} \(v(reloadsOK))
        portcullis_config_reloads_total{result="failed"} \(v(reloadsFailed))
        # HELP portcullis_config_generation The configuration generation in force (1 at start-up, +1 per reload).
        # TYPE portcullis_config_generation gauge
        portcullis_config_generation \(v(generation))

        """
    }
}
