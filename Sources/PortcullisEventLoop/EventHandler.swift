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
