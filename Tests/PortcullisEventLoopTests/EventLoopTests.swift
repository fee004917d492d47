import XCTest
import Synchronization
import PortcullisCore
@testable import PortcullisEventLoop

/// Timers and cross-thread wake-ups on a real epoll loop (every wait bounded).
final class EventLoopTests: XCTestCase {
    final class Box: @unchecked Sendable {
        var fired: [String] = []
        var at: [String: UInt64] = [:]
    }

    /// Runs `setup` on the loop thread, lets the loop run for `ms`, stops it, returns.
    func runLoop(ms: UInt64, _ setup: @escaping @Sendable (EventLoop) -> Void) throws {
        let loop = try EventLoop()
        let done = Mutex(false)
        spawnThread(name: "test-loop") {
            loop.execute { setup(loop) }
            loop.run()
            done.withLock { $0 = true }
        }
        usleep(UInt32(ms * 1000))
        loop.stop()
        for _ in 0..<200 where !done.withLock({ $0 }) { usleep(5000) }
        XCTAssertTrue(done.withLock { $0 }, "loop did not stop")
    }

    func testTimersFireInDeadlineOrder() throws {
        let box = Box()
        try runLoop(ms: 300) { loop in
            for (name, delay) in [("c", 60), ("a", 20), ("b", 40)] {
                loop.schedule(after: UInt64(delay) * 1_000_000) { box.fired.append(name) }
            }
        }
        XCTAssertEqual(box.fired, ["a", "b", "c"])
    }

    func testPushingADeadlineLaterDefersTheTimer() throws {
        let box = Box()
        try runLoop(ms: 700) { loop in
            let start = MonotonicClock.now()
            let t = LoopTimer { box.at["t"] = MonotonicClock.now() - start }
            loop.arm(t, after: 50_000_000)
            loop.arm(t, after: 150_000_000)   // O(1) re-arm: must not fire at 50 ms
        }
        let firedAfter = try XCTUnwrap(box.at["t"])
        XCTAssertGreaterThanOrEqual(firedAfter, 140_000_000)
        XCTAssertLessThan(firedAfter, 650_000_000)
    }

    func testPullingADeadlineEarlierAndCancelling() throws {
        let box = Box()
        try runLoop(ms: 300) { loop in
            let early = LoopTimer { box.fired.append("early") }
            loop.arm(early, after: 200_000_000)
            loop.arm(early, after: 20_000_000)
            let cancelled = LoopTimer { box.fired.append("cancelled") }
            loop.arm(cancelled, after: 30_000_000)
            loop.cancel(cancelled)
            let released = LoopTimer { box.fired.append("released") }
            loop.arm(released, after: 30_000_000)
            loop.release(released)
            let rearmed = LoopTimer { box.fired.append("rearmed") }
            loop.arm(rearmed, after: 10_000_000)
            loop.cancel(rearmed)
            loop.arm(rearmed, after: 60_000_000)   // cancel then arm again: fires once
        }
        XCTAssertEqual(box.fired, ["early", "rearmed"])
    }

    func testExecuteFromAnotherThreadRunsOnTheLoop() throws {
        let loop = try EventLoop()
        let ran = Mutex(0)
        let stopped = Mutex(false)
        spawnThread(name: "test-loop") {
            loop.run()
            stopped.withLock { $0 = true }
        }
        for _ in 0..<100 { loop.execute { ran.withLock { $0 += 1 } } }
        for _ in 0..<200 where ran.withLock({ $0 }) < 100 { usleep(2000) }
        XCTAssertEqual(ran.withLock { $0 }, 100)
        loop.stop()
        for _ in 0..<200 where !stopped.withLock({ $0 }) { usleep(5000) }
        XCTAssertTrue(stopped.withLock { $0 })
    }

    /// A handler that unregisters itself and drops its last other owner inside `handleEvent`
    /// (a connection closing on a read) finishes its call on a live object: the loop keeps it
    /// until the end of the iteration (`retired`), then frees it.
    final class SelfClosing: EventHandler, @unchecked Sendable {
        let fd: Int32
        unowned let loop: EventLoop
        let log: Log
        var owner: SelfClosing?
        init(fd: Int32, loop: EventLoop, log: Log) { self.fd = fd; self.loop = loop; self.log = log }
        func handleEvent(_ events: UInt32) {
            loop.unregister(fd: fd)
            owner = nil                              // the last owner besides the loop
            log.lines.withLock { $0.append("handled \(fd)") }   // (self is still alive here)
        }
        deinit { log.lines.withLock { $0.append("freed") } }
    }
    final class Log: Sendable { let lines = Mutex<[String]>([]) }

    func testAHandlerMayUnregisterItselfAndDropItsLastOwnerMidCall() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        let log = Log()
        let fd = fds[0]
        _ = write(fds[1], "x", 1)                     // readable as soon as it is registered
        try runLoop(ms: 200) { loop in
            let h = SelfClosing(fd: fd, loop: loop, log: log)
            h.owner = h                              // owns itself until its event
            try? loop.register(fd: fd, handler: h)
        }
        XCTAssertEqual(log.lines.withLock { $0 }, ["handled \(fd)", "freed"])
    }
}
