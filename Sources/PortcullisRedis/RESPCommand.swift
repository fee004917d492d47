import PortcullisCore

/// A Redis command in RESP, written straight into bytes (what hiredis's argv formatting would
/// produce, without its per-argument `sdscatfmt` and our per-argument `strdup`): a header
/// `*<count>`, then `$<length>` + bytes per argument. Sent with `redisAsyncFormattedCommand`.
public struct RESPCommand: Sendable {
    public private(set) var bytes: [UInt8] = []
    /// Arguments declared in the header / written so far (checked when sent).
    public let count: Int
    public private(set) var written = 0

    public init(arguments count: Int, capacity: Int = 128) {
        self.count = count
        bytes.reserveCapacity(capacity)
        bytes.append(UInt8(ascii: "*")); bytes.appendDecimal(Int64(count)); bytes.append(13); bytes.append(10)
    }

    public init(_ args: [String]) {
        self.init(arguments: args.count, capacity: 16 + args.reduce(0) { $0 + $1.utf8.count + 16 })
        for a in args { add(a) }
    }

    public mutating func add(_ s: String) {
        s.withUTF8Bytes { add($0) }
    }

    public mutating func add(_ p: UnsafeRawBufferPointer) {
        bytes.append(UInt8(ascii: "$")); bytes.appendDecimal(Int64(p.count)); bytes.append(13); bytes.append(10)
        bytes.append(bytes: p)
        bytes.append(13); bytes.append(10)
        written += 1
    }

    /// A decimal integer argument.
    public mutating func add(_ n: Int64) {
        var width = n < 0 ? 2 : 1
        var v = n.magnitude
        while v >= 10 { v /= 10; width += 1 }
        bytes.append(UInt8(ascii: "$")); bytes.appendDecimal(Int64(width)); bytes.append(13); bytes.append(10)
        bytes.appendDecimal(n)
        bytes.append(13); bytes.append(10)
        written += 1
    }

    /// `prefix` (a command with `count` arguments in all) followed by this command's arguments:
    /// the same tail sent as `EVALSHA sha` or as `EVAL source`.
    public func prefixed(by head: [String]) -> RESPCommand {
        var c = RESPCommand(arguments: head.count + written, capacity: bytes.count + 64)
        for h in head { c.add(h) }
        c.bytes.append(contentsOf: bytes[headerLength...])
        c.written += written
        return c
    }

    /// Where the arguments start (after `*<count>\r\n`).
    var headerLength: Int {
        var i = 0
        while i < bytes.count && bytes[i] != 10 { i += 1 }
        return i + 1
    }

    public var isComplete: Bool { written == count }
}
