/// A MessagePack array of integers: how one argument carries a whole batch to a Lua script,
/// which reads it with Redis's bundled `cmsgpack.unpack` in one C call (instead of one
/// `tonumber` per argument, and one Redis string object per argument on the way in).
/// Only what the limiter sends: an array header, then integers in their shortest encoding.
public struct MessagePackWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(arrayCount count: Int, capacity: Int = 64) {
        bytes.reserveCapacity(capacity)
        if count < 16 {
            bytes.append(0x90 | UInt8(count))
        } else if count <= Int(UInt16.max) {
            bytes.append(0xdc); appendBigEndian(UInt64(count), width: 2)
        } else {
            bytes.append(0xdd); appendBigEndian(UInt64(UInt32(clamping: count)), width: 4)
        }
    }

    public mutating func add(_ n: Int64) {
        if n >= 0 {
            let u = UInt64(n)
            if u < 128 { bytes.append(UInt8(u)) }
            else if u <= UInt64(UInt8.max) { bytes.append(0xcc); bytes.append(UInt8(u)) }
            else if u <= UInt64(UInt16.max) { bytes.append(0xcd); appendBigEndian(u, width: 2) }
            else if u <= UInt64(UInt32.max) { bytes.append(0xce); appendBigEndian(u, width: 4) }
            else { bytes.append(0xcf); appendBigEndian(u, width: 8) }
        } else if n >= -32 {
            bytes.append(UInt8(truncatingIfNeeded: n))                // negative fixint
        } else {
            bytes.append(0xd3); appendBigEndian(UInt64(bitPattern: n), width: 8)
        }
    }

    public mutating func add(_ n: Int) { add(Int64(n)) }

    private mutating func appendBigEndian(_ v: UInt64, width: Int) {
        var shift = (width - 1) * 8
        while shift >= 0 { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))); shift -= 8 }
    }
}

extension RESPCommand {
    public mutating func add(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { add($0) }
    }
}
