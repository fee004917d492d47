import PortcullisJSON
import PortcullisCore
import PortcullisHTTP
import Synchronization

/// Counters the tests read through `GET /_fake/stats`; shared by the fake's workers.
final class FakeStats: Sendable {
    static let shared = FakeStats()
    let requests = Atomic<Int>(0)
    let connections = Atomic<Int>(0)
    let chatRequests = Atomic<Int>(0)
    let activeStreams = Atomic<Int>(0)
    let abortedStreams = Atomic<Int>(0)
    let lastAbortMillis = Atomic<Int>(0)
    /// The last chat request's head and body size; rendered to JSON only when asked for, so
    /// recording costs the fake almost nothing per request (it is a benchmark baseline too).
    let lastRequest = Mutex<(HTTPRequestHead, Int)?>(nil)
    /// Requests per `/_x/<knobs>` path prefix ("" for none): which scripted provider was asked.
    let byPrefix = Mutex<[String: Int]>([:])

    func countPrefix(_ p: String) { byPrefix.withLock { $0[p, default: 0] += 1 } }

    func lastRequestJSON() -> String {
        guard let (h, bodyCount) = lastRequest.withLock({ $0 }) else { return "null" }
        var s = "{\"method\":\(JSONWriter.quoted(h.method)),\"target\":\(JSONWriter.quoted(h.target)),\"body_bytes\":\(bodyCount),\"headers\":["
        for (i, hd) in h.headers.enumerated() {
            if i > 0 { s += "," }
            s += "[\(JSONWriter.quoted(hd.name)),\(JSONWriter.quoted(hd.value))]"
        }
        return s + "]}"
    }

    func json() -> String {
        "{\"requests\":\(requests.load(ordering: .relaxed)),\"connections\":\(connections.load(ordering: .relaxed)),\"chat_requests\":\(chatRequests.load(ordering: .relaxed)),\"active_streams\":\(activeStreams.load(ordering: .relaxed)),\"aborted_streams\":\(abortedStreams.load(ordering: .relaxed)),\"last_abort_unix_ms\":\(lastAbortMillis.load(ordering: .relaxed)),\"by_prefix\":{\(prefixJSON())}}"
    }

    func prefixJSON() -> String {
        byPrefix.withLock { m in m.sorted { $0.key < $1.key }.map { "\(JSONWriter.quoted($0.key)):\($0.value)" }.joined(separator: ",") }
    }

    func reset() {
        byPrefix.withLock { $0 = [:] }
        requests.store(0, ordering: .relaxed)
        connections.store(0, ordering: .relaxed)
        chatRequests.store(0, ordering: .relaxed)
        abortedStreams.store(0, ordering: .relaxed)
        lastAbortMillis.store(0, ordering: .relaxed)
        lastRequest.withLock { $0 = nil }
    }
}
