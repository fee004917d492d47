/// Incremental decoder for the chunked transfer coding (RFC 9112 §7.1). A value-type state
/// machine: feed it any split of the bytes; it hands out data slices through `onData` (slices of
/// the input, no copy) and reports how many input bytes it consumed.
public struct ChunkedDecoder: Sendable {
    enum State: Sendable, Equatable {
        case size(value: Int, digits: Int)
        case extensions(value: Int, length: Int)
        case sizeLF(value: Int)
        case data(remaining: Int)
        case dataCR, dataLF
        case trailerLineStart(total: Int)
        case trailerLine(total: Int)
        case trailerLF(total: Int, empty: Bool)
        case done
    }

    public enum Outcome: Equatable {
        /// All of the input was consumed; more is needed.
        case needMore
        /// The terminating chunk and trailers ended after `consumed` bytes of this input.
        case finished(consumed: Int)
        case invalid(String)
    }

    var state = State.size(value: 0, digits: 0)
    public init() {}

    public var isDone: Bool { state == .done }

    public mutating func feed(_ b: UnsafeRawBufferPointer, onData: (UnsafeRawBufferPointer) -> Void) -> Outcome {
        var i = 0
        let n = b.count
        while i < n {
            switch state {
            case .size(let v, let d):
                let c = b[i]
                if let h = hexValue(c) {
                    if d >= 15 { return .invalid("Chunk size too large.") }
                    state = .size(value: v * 16 + h, digits: d + 1)
                    i += 1
                } else if d == 0 {
                    return .invalid("Invalid chunk size.")
                } else if c == 59 /* ; */ || c == 32 || c == 9 {
                    state = .extensions(value: v, length: 0); i += 1
                } else if c == 13 {
                    state = .sizeLF(value: v); i += 1
                } else {
                    return .invalid("Invalid chunk size.")
                }
            case .extensions(let v, let len):
                let c = b[i]
                if c == 13 { state = .sizeLF(value: v) }
                else if c == 10 || c == 0 { return .invalid("Invalid chunk extension.") }
                else if len > 4096 { return .invalid("Chunk extension too long.") }
                else { state = .extensions(value: v, length: len + 1) }
                i += 1
            case .sizeLF(let v):
                guard b[i] == 10 else { return .invalid("Chunk size line not ended by CRLF.") }
                i += 1
                state = v == 0 ? .trailerLineStart(total: 0) : .data(remaining: v)
            case .data(let r):
                let take = min(r, n - i)
                onData(UnsafeRawBufferPointer(rebasing: b[i..<(i + take)]))
                i += take
                state = r - take == 0 ? .dataCR : .data(remaining: r - take)
            case .dataCR:
                guard b[i] == 13 else { return .invalid("Chunk data not followed by CRLF.") }
                i += 1; state = .dataLF
            case .dataLF:
                guard b[i] == 10 else { return .invalid("Chunk data not followed by CRLF.") }
                i += 1; state = .size(value: 0, digits: 0)
            case .trailerLineStart(let t):
                if b[i] == 13 { state = .trailerLF(total: t, empty: true) }
                else if b[i] == 10 { return .invalid("Bare LF in trailer section.") }
                else { state = .trailerLine(total: t + 1) }
                i += 1
            case .trailerLine(let t):
                if t > 16384 { return .invalid("Trailer section too large.") }
                if b[i] == 13 { state = .trailerLF(total: t, empty: false) }
                else if b[i] == 10 || b[i] == 0 { return .invalid("Invalid trailer line.") }
                else { state = .trailerLine(total: t + 1) }
                i += 1
            case .trailerLF(let t, let empty):
                guard b[i] == 10 else { return .invalid("Trailer line not ended by CRLF.") }
                i += 1
                if empty { state = .done; return .finished(consumed: i) }
                state = .trailerLineStart(total: t)
            case .done:
                return .finished(consumed: i)
            }
        }
        return state == .done ? .finished(consumed: i) : .needMore
    }

    @inline(__always) private func hexValue(_ c: UInt8) -> Int? {
        switch c {
        case 48...57: Int(c - 48)
        case 97...102: Int(c - 87)
        case 65...70: Int(c - 55)
        default: nil
        }
    }
}
