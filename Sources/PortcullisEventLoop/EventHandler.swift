import PortcullisCore

/// Something that owns an fd registered with an `EventLoop`.
///
/// Called only on the loop's own thread. `events` is the raw epoll mask (EPOLLIN, EPOLLOUT,
/// EPOLLRDHUP, EPOLLHUP, EPOLLERR). Registrations are edge-triggered: a handler must read or
/// write until `wouldBlock`, or remember that it stopped early and resume itself later.
public protocol EventHandler: AnyObject {
    func handleEvent(_ events: UInt32)
}

/// Work an object asks its loop to run once at the end of the current iteration (flushing a
/// connection's output after all of this iteration's events were handled). Loop thread only.
public protocol DeferredTask: AnyObject {
    func runDeferredTask()
}

// Called through a guaranteed reference (`GuaranteedRef`): `EventLoop` keeps an unregistered
// handler alive until the end of the iteration it was unregistered in, and a queued task until
// it ran.
extension EventHandler {
    static func handleGuaranteed(_ object: UnsafeMutableRawPointer, _ events: UInt32) {
        withGuaranteed(object, as: Self.self) { $0.handleEvent(events) }
    }
    var guaranteedRef: GuaranteedRef<any EventHandler.Type> { GuaranteedRef(self, type: Self.self) }
}

extension DeferredTask {
    static func runGuaranteed(_ object: UnsafeMutableRawPointer) {
        withGuaranteed(object, as: Self.self) { $0.runDeferredTask() }
    }
    var guaranteedRef: GuaranteedRef<any DeferredTask.Type> { GuaranteedRef(self, type: Self.self) }
}
