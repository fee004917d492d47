import CLinux
import PortcullisCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One epoll instance driven by one thread (nginx worker / NIO `SelectableEventLoop` shape).
///
/// Ownership and threads:
/// - Everything except `execute(_:)` and `stop()` must be called on the loop's own thread.
/// - The loop does not own handler fds: whoever registers an fd unregisters and closes it.
/// - `epoll_event.data.u64` packs (generation << 32 | fd), so events still queued for a closed
///   and reused fd are dropped instead of reaching the wrong handler.
public final class EventLoop: @unchecked Sendable {
    private let epfd: Int32
    private let wakeFd: Int32
    /// The registered handlers by fd: `handlers` owns them, `dispatch` is what `run()` calls
    /// (unretained; see `GuaranteedRef`). An unregistered handler moves to `retired`, which
    /// keeps it alive until the end of the iteration: a handler may unregister itself (and drop
    /// its last other owner) while its `handleEvent` is running.
    private var handlers: [EventHandler?] = []
    private var dispatch: [GuaranteedRef<any EventHandler.Type>?] = []
    private var retired: [EventHandler] = []
    private var generations: [UInt32] = []
    private var nextGeneration: UInt32 = 1
    @usableFromInline var timers = TimerHeap()
    private let pending = Mutex<[@Sendable () -> Void]>([])
    private let stopRequested = Atomic<Bool>(false)
    private var events: [epoll_event]
    /// Cached monotonic time (ns): read after each epoll_wait and again before timers fire, so a
    /// timer callback sees the time it fired at. Deadlines are set from it (`arm(after:)`), as
    /// nginx does with its cached time: a timer armed late in a busy iteration fires early by at
    /// most that iteration's length (microseconds; the timeouts here are milliseconds and up),
    /// and a request path reads the clock once per iteration instead of once per timer.
    public private(set) var now: UInt64 = MonotonicClock.now()
    /// Identity of the loop's thread, set when `run()` starts.
    private var threadID: pthread_t?
    public let index: Int
    /// Deferred work run at the end of the current iteration (on this thread).
    private var deferred: [() -> Void] = []
    /// Tasks queued for the end of this iteration: `deferredTasks` owns them until they ran,
    /// `deferredCalls` is what `runDeferred` calls (the same tasks, unretained).
    private var deferredTasks: [DeferredTask] = []
    private var deferredCalls: [GuaranteedRef<any DeferredTask.Type>] = []
    /// The batches `runDeferred` is running (spares swapped with the queues).
    private var runningTasks: [DeferredTask] = []
    private var runningCalls: [GuaranteedRef<any DeferredTask.Type>] = []
    private var runningWork: [() -> Void] = []

    public init(index: Int = 0) throws {
        self.index = index
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        if epfd < 0 { throw IOError("epoll_create1", errno: pc_errno()) }
        wakeFd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        if wakeFd < 0 { throw IOError("eventfd", errno: pc_errno()) }
        events = [epoll_event](repeating: epoll_event(), count: 256)
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue
        ev.data.u64 = UInt64(UInt32.max) << 32 | UInt64(UInt32(bitPattern: wakeFd))
        if epoll_ctl(epfd, EPOLL_CTL_ADD, wakeFd, &ev) != 0 { throw IOError("epoll_ctl", errno: pc_errno()) }
    }

    deinit {
        Syscall.close(wakeFd)
        Syscall.close(epfd)
    }

    public var inLoopThread: Bool {
        guard let t = threadID else { return true }
        return pthread_equal(t, pthread_self()) != 0
    }

    /// Registers `fd` edge-triggered for read, write and peer-close events.
    public func register(fd: Int32, handler: EventHandler) throws {
        assert(inLoopThread)
        let i = Int(fd)
        if i >= handlers.count {
            let n = max(i + 1, handlers.count * 2, 64)
            dispatch += [GuaranteedRef<any EventHandler.Type>?](repeating: nil, count: n - handlers.count)
            handlers += [EventHandler?](repeating: nil, count: n - handlers.count)
            generations += [UInt32](repeating: 0, count: n - generations.count)
        }
        nextGeneration = nextGeneration &+ 1
        if nextGeneration == UInt32.max || nextGeneration == 0 { nextGeneration = 1 }
        if let old = handlers[i] { retired.append(old) }   // (a registration not unregistered)
        handlers[i] = handler
        dispatch[i] = handler.guaranteedRef
        generations[i] = nextGeneration
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
        ev.data.u64 = UInt64(nextGeneration) << 32 | UInt64(UInt32(bitPattern: fd))
        if epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0 {
            handlers[i] = nil
            dispatch[i] = nil
            throw IOError("epoll_ctl(ADD)", errno: pc_errno())
        }
    }

    /// Registers a listening socket level-triggered for reads only.
    public func registerListener(fd: Int32, handler: EventHandler) throws {
        try register(fd: fd, handler: handler)
        var ev = epoll_event()
        ev.events = EPOLLIN.rawValue
        ev.data.u64 = UInt64(generations[Int(fd)]) << 32 | UInt64(UInt32(bitPattern: fd))
        _ = epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev)
    }

    /// Removes `fd`; the caller closes it afterwards.
    public func unregister(fd: Int32) {
        assert(inLoopThread)
        let i = Int(fd)
        guard i < handlers.count, let h = handlers[i] else { return }
        retired.append(h)
        handlers[i] = nil
        dispatch[i] = nil
        generations[i] = 0
        _ = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
    }

    // MARK: timers

    /// Arms (or re-arms) `timer` to fire `after` ns from now.
    @inlinable
    public func arm(_ timer: LoopTimer, after ns: UInt64) {
        arm(timer, at: now &+ ns)
    }

    /// Arms `timer` at an absolute monotonic deadline. O(1) when pushing it later.
    @inlinable
    public func arm(_ timer: LoopTimer, at deadline: UInt64) {
        let d = max(deadline, 1)
        timer.wanted = d
        if timer.heapIndex < 0 || d < timer.heapKey { timers.insertOrUpdate(timer, key: d) }
    }

    /// Disarms `timer` in O(1); its heap entry is dropped lazily when it comes due.
    @inlinable public func cancel(_ timer: LoopTimer) { timer.wanted = 0 }

    /// Disarms `timer` and removes it from the heap now, so the loop holds no reference to it
    /// (call when the timer's owner goes away: a closed connection, a finished exchange).
    public func release(_ timer: LoopTimer) {
        timer.wanted = 0
        timers.remove(timer)
    }

    /// A one-shot callback after `ns`; returns the timer so it can be cancelled.
    @discardableResult
    public func schedule(after ns: UInt64, _ body: @escaping () -> Void) -> LoopTimer {
        let t = LoopTimer(body)
        arm(t, after: ns)
        return t
    }

    /// Runs `body` on this thread after the current batch of events (re-entrancy breaker).
    public func deferToEndOfIteration(_ body: @escaping () -> Void) { deferred.append(body) }

    /// Runs `task.runDeferredTask()` at the end of this iteration (no closure allocation).
    public func deferToEndOfIteration(_ task: DeferredTask) {
        deferredTasks.append(task)
        deferredCalls.append(task.guaranteedRef)
    }

    // MARK: cross-thread

    /// Queues `task` to run on the loop thread; safe from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        pending.withLock { $0.append(task) }
        var one: UInt64 = 1
        _ = Glibc.write(wakeFd, &one, 8)
    }

    /// Asks the loop to return from `run()`; safe from any thread.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        var one: UInt64 = 1
        _ = Glibc.write(wakeFd, &one, 8)
    }

    // MARK: run

    /// Runs until `stop()`. One iteration: wait (bounded by the nearest timer), dispatch all
    /// ready fds, fire expired timers, run cross-thread tasks and deferred work.
    public func run() {
        threadID = pthread_self()
        while !stopRequested.load(ordering: .relaxed) {
            var timeout: Int32 = -1
            if let t = timers.first {
                let cur = MonotonicClock.now()
                timeout = t.heapKey <= cur ? 0 : Int32(min((t.heapKey - cur + 999_999) / 1_000_000, 60_000))
            }
            if !deferred.isEmpty || !deferredTasks.isEmpty { timeout = 0 }
            let n = events.withUnsafeMutableBufferPointer { buf in
                epoll_wait(epfd, buf.baseAddress, Int32(buf.count), timeout)
            }
            now = MonotonicClock.now()
            if n < 0 {
                if pc_errno() == EINTR { continue }
                Log.error("epoll_wait: \(Syscall.errorString(pc_errno()))")
                return
            }
            var i = 0
            while i < Int(n) {
                let ev = events[i]
                i += 1
                let data = ev.data.u64
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
                let gen = UInt32(truncatingIfNeeded: data >> 32)
                if gen == UInt32.max { drainWakeups(); continue }
                let fi = Int(fd)
                guard fi < dispatch.count, generations[fi] == gen, let h = dispatch[fi] else { continue }
                h.type.handleGuaranteed(h.object, ev.events)
            }
            fireTimers()
            runDeferred()
            if !retired.isEmpty { retired.removeAll(keepingCapacity: true) }
        }
        runDeferred()
        retired.removeAll()
    }

    private func fireTimers() {
        guard !timers.isEmpty else { return }
        let cur = MonotonicClock.now()
        now = cur
        while let t = timers.first, t.heapKey <= cur {
            if t.deadline == 0 {
                timers.remove(t)                       // cancelled
            } else if t.deadline > cur {
                timers.insertOrUpdate(t, key: t.deadline)  // pushed back since it was queued
            } else {
                timers.remove(t)
                t.wanted = 0
                t.callback()
            }
        }
    }

    /// Runs deferred work until none is left: work deferred by deferred work (a Redis batch
    /// queuing its write, a resumed upstream read scheduling a client flush) runs in this same
    /// iteration, never after the next `epoll_wait`.
    private func runDeferred() {
        while !deferredTasks.isEmpty || !deferred.isEmpty {
            while !deferredTasks.isEmpty {
                // The queue and a spare trade places (tasks may queue more while these run): both
                // keep their capacity, and neither is copied, so no iteration allocates.
                swap(&deferredTasks, &runningTasks)
                swap(&deferredCalls, &runningCalls)
                for c in runningCalls { c.type.runGuaranteed(c.object) }   // (`runningTasks` owns them)
                runningCalls.removeAll(keepingCapacity: true)
                runningTasks.removeAll(keepingCapacity: true)
            }
            while !deferred.isEmpty {
                swap(&deferred, &runningWork)
                for i in runningWork.indices { runningWork[i]() }
                runningWork.removeAll(keepingCapacity: true)
            }
        }
    }

    private func drainWakeups() {
        var v: UInt64 = 0
        _ = Glibc.read(wakeFd, &v, 8)
        let tasks = pending.withLock { q -> [@Sendable () -> Void] in
            let t = q
            q.removeAll(keepingCapacity: true)
            return t
        }
        for t in tasks { t() }
    }
}
