/// Calls `body` with `bytes` in consecutive pieces of `step` bytes (the last may be shorter), each
/// piece in its own buffer: a streaming parser must give the same result however the network
/// splits its input.
public func forEachSlice(of bytes: [UInt8], step: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
    precondition(step > 0, "step must be positive")
    var i = 0
    while i < bytes.count {
        let end = i + min(step, bytes.count - i)     // no overflow for step = Int.max
        Array(bytes[i..<end]).withUnsafeBytes(body)
        i = end
    }
}
