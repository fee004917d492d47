/// A one-shot timer owned by one event loop.
///
/// Re-arming is O(1) when the new deadline is later than the one the loop's heap holds (the
/// common case: keep-alive and idle timers pushed back on every request or read): the heap entry
/// stays where it is, and when it comes due the loop moves it to the wanted deadline instead of
/// firing. A timer has at most one heap entry, so re-arming leaves no garbage.
/// Thread: only the owning loop's thread arms, cancels, releases or fires it.
public final class LoopTimer {
    /// Absolute monotonic deadline the owner wants; 0 when disarmed.
    public var deadline: UInt64 { wanted }
    /// (`@usableFromInline`: arming and cancelling are inlined into their callers, whose
    /// arguments then need no retain around a call.)
    @usableFromInline var wanted: UInt64 = 0
    /// The key of this timer's heap entry (≤ `deadline` while armed).
    @usableFromInline var heapKey: UInt64 = 0
    /// Position in the loop's heap, -1 when not in it.
    @usableFromInline var heapIndex = -1
    var callback: () -> Void

    public init(_ callback: @escaping () -> Void) { self.callback = callback }

    public var isArmed: Bool { deadline != 0 }

    /// Replaces the action run on expiry (e.g. when a connection changes phase).
    public func setCallback(_ cb: @escaping () -> Void) { callback = cb }
}

/// An indexed binary min-heap of timers by `heapKey`.
@usableFromInline struct TimerHeap {
    private(set) var items: [LoopTimer] = []

    var isEmpty: Bool { items.isEmpty }
    var first: LoopTimer? { items.first }
    var count: Int { items.count }

    @usableFromInline mutating func insertOrUpdate(_ t: LoopTimer, key: UInt64) {
        if t.heapIndex >= 0 {
            let old = t.heapKey
            t.heapKey = key
            if key < old { siftUp(t.heapIndex) } else { siftDown(t.heapIndex) }
        } else {
            t.heapKey = key
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

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let p = (i - 1) / 2
            if items[p].heapKey <= items[i].heapKey { break }
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
            if l < n && items[l].heapKey < items[m].heapKey { m = l }
            if r < n && items[r].heapKey < items[m].heapKey { m = r }
            if m == i { break }
            items.swapAt(m, i)
            items[m].heapIndex = m
            items[i].heapIndex = i
            i = m
        }
    }
}
