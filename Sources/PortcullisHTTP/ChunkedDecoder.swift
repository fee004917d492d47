/// Incremental decoder for the chunked transfer coding (RFC 9112 §7.1). A value-type state
/// machine: feed it any split of the bytes; it hands out data slices through `onData` (slices of
/// the input, no copy) and reports how many input bytes it consumed.
///
/// Strict: chunk extensions must follow the `chunk-ext` grammar (`;` name [`=` token or
/// quoted-string], with optional whitespace), trailer lines must be valid header fields, and a
/// declared chunk size that would take the body past `maxBodyBytes` is refused as soon as its
/// digits are read (`.tooLarge`), before any of its data is waited for.
public struct ChunkedDecoder: Sendable {
    enum Ext: UInt8, Sendable { case afterSize, beforeName, name, afterName, beforeValue, token, quoted, quotedEscape, afterValue }

    enum State: Sendable, Equatable {
        case size(value: Int, digits: Int)
        case extensions(value: Int, length: Int, at: Ext)
        case sizeLF(value: Int)
        case data(remaining: Int)
        case dataCR, dataLF
        case trailerLineStart(total: Int)
        /// `inValue`: the colon was seen (the name is a non-empty token).
        case trailerLine(total: Int, inValue: Bool)
        case trailerLF(total: Int, empty: Bool)
        case done
    }

    public enum Outcome: Equatable {
        /// All of the input was consumed; more is needed.
        case needMore
        /// The terminating chunk and trailers ended after `consumed` bytes of this input.
        case finished(consumed: Int)
        case invalid(String)
        /// The declared chunk sizes exceed `maxBodyBytes`.
        case tooLarge
    }

    var state = State.size(value: 0, digits: 0)
    /// Sum of the chunk sizes declared so far.
    var declared = 0
    public let maxBodyBytes: Int

    public init(maxBodyBytes: Int = Int.max) { self.maxBodyBytes = maxBodyBytes }

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
                    let nv = v * 16 + h
                    if nv > maxBodyBytes - declared { return .tooLarge }
                    state = .size(value: nv, digits: d + 1)
                    i += 1
                } else if d == 0 {
                    return .invalid("Invalid chunk size.")
                } else if c == 13 {
                    state = .sizeLF(value: v); i += 1
                } else {
                    state = .extensions(value: v, length: 0, at: .afterSize)   // re-examine c there
                }
            case .extensions(let v, let len, let at):
                let c = b[i]
                if len > 4096 { return .invalid("Chunk extension too long.") }
                guard let next = Self.extStep(at, c) else {
                    if c == 13 && (at == .name || at == .token || at == .afterValue) {
                        state = .sizeLF(value: v); i += 1; continue
                    }
                    return .invalid("Invalid chunk extension.")
                }
                state = .extensions(value: v, length: len + 1, at: next)
                i += 1
            case .sizeLF(let v):
                guard b[i] == 10 else { return .invalid("Chunk size line not ended by CRLF.") }
                i += 1
                declared += v
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
                let c = b[i]
                if c == 13 { state = .trailerLF(total: t, empty: true) }
                else if HeadLexer.isTchar(c) { state = .trailerLine(total: t + 1, inValue: false) }
                else { return .invalid("Invalid trailer field.") }
                i += 1
            case .trailerLine(let t, let inValue):
                if t > 16384 { return .invalid("Trailer section too large.") }
                let c = b[i]
                if c == 13 {
                    guard inValue else { return .invalid("Invalid trailer field.") }
                    state = .trailerLF(total: t, empty: false)
                } else if !inValue {
                    if c == HeadLexer.COLON { state = .trailerLine(total: t + 1, inValue: true) }
                    else if HeadLexer.isTchar(c) { state = .trailerLine(total: t + 1, inValue: false) }
                    else { return .invalid("Invalid trailer field.") }
                } else {
                    if (c < 0x20 && c != HeadLexer.HT) || c == 0x7F { return .invalid("Invalid trailer field value.") }
                    state = .trailerLine(total: t + 1, inValue: true)
                }
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

    /// One byte of `chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`; nil when the
    /// byte is not allowed here (the caller then accepts CR where the line may end).
    static func extStep(_ at: Ext, _ c: UInt8) -> Ext? {
        let ws = c == HeadLexer.SP || c == HeadLexer.HT
        switch at {
        case .afterSize, .afterValue:
            return ws ? at : c == 59 /* ; */ ? .beforeName : nil
        case .beforeName:
            return ws ? .beforeName : HeadLexer.isTchar(c) ? .name : nil
        case .name:
            return HeadLexer.isTchar(c) ? .name : ws ? .afterName : c == 61 /* = */ ? .beforeValue : c == 59 ? .beforeName : nil
        case .afterName:
            return ws ? .afterName : c == 61 ? .beforeValue : c == 59 ? .beforeName : nil
        case .beforeValue:
            return ws ? .beforeValue : c == 34 /* " */ ? .quoted : HeadLexer.isTchar(c) ? .token : nil
        case .token:
            return HeadLexer.isTchar(c) ? .token : ws ? .afterValue : c == 59 ? .beforeName : nil
        case .quoted:
            if c == 34 { return .afterValue }
            if c == 92 /* \ */ { return .quotedEscape }
            return (c == HeadLexer.HT || (c >= 0x20 && c != 0x7F)) ? .quoted : nil
        case .quotedEscape:
            return (c == HeadLexer.HT || (c >= 0x20 && c != 0x7F)) ? .quoted : nil
        }
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
