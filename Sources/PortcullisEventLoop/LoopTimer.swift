/// A one-shot timer owned by one event loop. Re-arming moves it inside the loop's heap (at most
/// one heap entry per timer, so per-request re-arming leaves no garbage behind).
/// Thread: only the owning loop's thread arms, cancels or fires it.
public final class LoopTimer {
    /// Absolute monotonic deadline in ns; meaningful only while armed.
    public internal(set) var deadline: UInt64 = 0
    /// Position in the loop's heap, -1 when not armed.
    var heapIndex = -1
    var callback: () -> Void

    public init(_ callback: @escaping () -> Void) { self.callback = callback }

    public var isArmed: Bool { heapIndex >= 0 }

    /// Replaces the action run on expiry (e.g. when a connection changes phase).
    public func setCallback(_ cb: @escaping () -> Void) { callback = cb }
}

/// An indexed binary min-heap of timers by deadline.
struct TimerHeap {
    private(set) var items: [LoopTimer] = []

    var isEmpty: Bool { items.isEmpty }
    var first: LoopTimer? { items.first }

    mutating func insertOrUpdate(_ t: LoopTimer, deadline: UInt64) {
        if t.heapIndex >= 0 {
            let old = t.deadline
            t.deadline = deadline
            if deadline < old { siftUp(t.heapIndex) } else { siftDown(t.heapIndex) }
        } else {
            t.deadline = deadline
            t.heapIndex = items.count
            items.append(t)
            siftUp(t.heapIndex)
        }
    }

    mutating func remove(_ t: LoopTimer) {
        let i = t.heapIndex
        guard i >= 0, i < items.count, items[i] === t else { return }
        let last = items.count - 1
        if i != last {
            items.swapAt(i, last)
            items[i].heapIndex = i
        }
        items.removeLast()
        t.heapIndex = -1
        if i < items.count { siftDown(i); siftUp(i) }
    }

    mutating func popFirst() -> LoopTimer? {
        guard let t = items.first else { return nil }
        remove(t)
        return t
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let p = (i - 1) / 2
            if items[p].deadline <= items[i].deadline { break }
            items.swapAt(p, i)
            items[p].heapIndex = p
            items[i].heapIndex = i
            i = p
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let n = items.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n && items[l].deadline < items[m].deadline { m = l }
            if r < n && items[r].deadline < items[m].deadline { m = r }
            if m == i { break }
            items.swapAt(m, i)
            items[m].heapIndex = m
            items[i].heapIndex = i
            i = m
        }
    }
}
