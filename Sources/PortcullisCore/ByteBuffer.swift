import CLinux

/// A growable byte buffer with a read and a write index, backed by one malloc'd block.
///
/// Ownership: a `ByteBuffer` belongs to exactly one connection (or one test) and is touched only
/// by the thread that owns that connection's event loop. It is a class so that the socket code
/// can read straight into its spare capacity without copy-on-write surprises.
public final class ByteBuffer {
    public private(set) var base: UnsafeMutablePointer<UInt8>
    public private(set) var capacity: Int
    /// Bytes before `readIndex` are consumed; bytes in `readIndex..<writeIndex` are readable.
    public var readIndex = 0
    public private(set) var writeIndex = 0
    /// What the first write after `release()` allocates.
    let initialCapacity: Int

    /// The block a released buffer points at: never written, never freed.
    nonisolated(unsafe) static let noStorage = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)

    /// `allocateNow: false`: no block until the first write (as after `release()`), for a
    /// buffer many owners never use.
    public init(capacity: Int = 4096, allocateNow: Bool = true) {
        self.initialCapacity = max(capacity, 16)
        if allocateNow {
            self.capacity = initialCapacity
            self.base = .allocate(capacity: initialCapacity)
        } else {
            self.capacity = 0
            self.base = ByteBuffer.noStorage
        }
    }

    deinit { if capacity > 0 { base.deallocate() } }

    /// Frees the block of an empty buffer; the next write allocates `initialCapacity` again.
    /// For connections that sit idle between rare events (a slow stream): memory per open
    /// stream is what the streams hold, not what their buffers once needed.
    public func release() {
        guard isEmpty, capacity > 0 else { return }
        base.deallocate()
        base = ByteBuffer.noStorage
        capacity = 0
        readIndex = 0; writeIndex = 0
    }

    @inline(__always) public var readableBytes: Int { writeIndex - readIndex }
    @inline(__always) public var isEmpty: Bool { writeIndex == readIndex }
    @inline(__always) public var readPointer: UnsafeMutablePointer<UInt8> { base + readIndex }
    @inline(__always) public var writePointer: UnsafeMutablePointer<UInt8> { base + writeIndex }
    @inline(__always) public var writableBytes: Int { capacity - writeIndex }

    /// The readable bytes as a raw buffer; valid until the next mutation.
    @inline(__always) public var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + readIndex, count: writeIndex - readIndex)
    }

    /// Makes room for at least `n` more bytes at the write end, compacting first. (The check is
    /// inlined into every append; the work is not.)
    @inline(__always)
    public func reserve(_ n: Int) {
        if capacity - writeIndex < n { grow(n) }
    }

    @inline(never)
    func grow(_ n: Int) {
        compact()
        if writableBytes >= n { return }
        var newCap = max(capacity * 2, initialCapacity)
        while newCap - writeIndex < n { newCap *= 2 }
        let nb = UnsafeMutablePointer<UInt8>.allocate(capacity: newCap)
        if capacity > 0 {
            nb.update(from: base, count: writeIndex)
            base.deallocate()
        }
        base = nb
        capacity = newCap
    }

    /// Moves the readable bytes to the front.
    public func compact() {
        if readIndex == 0 { return }
        let n = readableBytes
        if n > 0 { memmove(base, base + readIndex, n) }
        readIndex = 0
        writeIndex = n
    }

    @inline(__always) public func commitWrite(_ n: Int) { writeIndex += n }

    @inline(__always) public func consume(_ n: Int) {
        readIndex += n
        if readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
    }

    public func clear() { readIndex = 0; writeIndex = 0 }

    /// Drops a large block after a burst so an idle connection holds little memory.
    public func shrinkIfIdle(to limit: Int) {
        guard isEmpty, capacity > limit else { return }
        base.deallocate()
        capacity = limit
        base = .allocate(capacity: limit)
        readIndex = 0; writeIndex = 0
    }

    public func append(_ p: UnsafeRawPointer, _ n: Int) {
        if n == 0 { return }
        reserve(n)
        (base + writeIndex).update(from: p.assumingMemoryBound(to: UInt8.self), count: n)
        writeIndex += n
    }

    public func append(_ bytes: UnsafeRawBufferPointer) {
        guard let p = bytes.baseAddress else { return }
        append(p, bytes.count)
    }

    /// A literal's bytes (no allocation, no retain).
    @inline(__always)
    public func append(_ s: StaticString) {
        append(UnsafeRawPointer(s.utf8Start), s.utf8CodeUnitCount)
    }

    public func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    public func append(_ s: String) {
        s.withUTF8Bytes { append($0) }
    }

    public func append(byte: UInt8) {
        reserve(1)
        base[writeIndex] = byte
        writeIndex += 1
    }

    /// Appends `n` in lowercase hex (chunk sizes).
    public func appendHex(_ n: Int) {
        if n == 0 { append(byte: 0x30); return }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var v = UInt(n)
        withUnsafeMutableBytes(of: &digits) { d in
            while v > 0 {
                let nib = UInt8(v & 0xF)
                d[15 - count] = nib < 10 ? 0x30 + nib : 0x57 + nib
                v >>= 4; count += 1
            }
            append(UnsafeRawBufferPointer(rebasing: d[(16 - count)...]))
        }
    }

    public func appendDecimal(_ n: Int) {
        DecimalDigits.withDigits(Int64(n)) { append(UnsafeRawBufferPointer($0)) }
    }

    /// A copy of the readable bytes (tests, small bodies).
    public var bytes: [UInt8] { Array(readable) }
}
