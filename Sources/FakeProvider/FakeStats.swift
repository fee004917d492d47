import PortcullisCore
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
    let lastRequest = Mutex<String>("null")

    func json() -> String {
        "{\"requests\":\(requests.load(ordering: .relaxed)),\"connections\":\(connections.load(ordering: .relaxed)),\"chat_requests\":\(chatRequests.load(ordering: .relaxed)),\"active_streams\":\(activeStreams.load(ordering: .relaxed)),\"aborted_streams\":\(abortedStreams.load(ordering: .relaxed)),\"last_abort_unix_ms\":\(lastAbortMillis.load(ordering: .relaxed))}"
    }

    func reset() {
        requests.store(0, ordering: .relaxed)
        connections.store(0, ordering: .relaxed)
        chatRequests.store(0, ordering: .relaxed)
        abortedStreams.store(0, ordering: .relaxed)
        lastAbortMillis.store(0, ordering: .relaxed)
        lastRequest.withLock { $0 = "null" }
    }
}
