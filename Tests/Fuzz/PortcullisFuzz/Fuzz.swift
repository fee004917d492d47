import PortcullisCore
import PortcullisHTTP
import PortcullisJSON
import PortcullisAuth
import PortcullisAdapters
import PortcullisConfig
import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// Coverage-guided fuzz targets (libFuzzer) for every parser the gateway exposes to untrusted
/// bytes, and a replay mode for their findings.
///
/// - Fuzzing (`Scripts/fuzz.sh TARGET SECONDS`): built with `-sanitize=fuzzer,address -DFUZZING`;
///   libFuzzer's `main` calls `LLVMFuzzerTestOneInput`; the target comes from
///   `$PORTCULLIS_FUZZ_TARGET`.
/// - Replay (an ordinary build, in the test suite): `PortcullisFuzz TARGET FILE|DIR...` runs
///   each input once through the same function; a finding is a crash or a failed check.
///
/// Where a target can compare two answers it does (differential, not crash-only): a head parsed
/// whole and byte by byte; a chunked or SSE body fed whole and split; JSON parsed, written,
/// parsed again; a translation's output parsed by the strict reader.
enum FuzzTarget: String, CaseIterable {
    case request, response, jwt, json, anthropic, config

    func run(_ data: UnsafeRawBufferPointer) {
        switch self {
        case .request: Fuzz.request(data)
        case .response: Fuzz.response(data)
        case .jwt: Fuzz.jwt(data)
        case .json: Fuzz.json(data)
        case .anthropic: Fuzz.anthropic(data)
        case .config: Fuzz.config(data)
        }
    }
}

/// A failed differential check: abort, so libFuzzer keeps the input (and replay fails).
func check(_ ok: @autoclosure () -> Bool, _ what: String) {
    if !ok() {
        var line = "fuzz check failed: \(what)\n"
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
        abort()
    }
}

enum Fuzz {
    static let requestParser = HTTPRequestParser(limits: HTTPParserLimits(maxHeaderBytes: 8192, maxRequestLineBytes: 4096))

    /// Request head (whole vs byte by byte, same answer), then its body through the chunked
    /// decoder (whole vs split at a data-chosen point, same body).
    static func request(_ d: UnsafeRawBufferPointer) {
        let whole = requestParser.parse(d)
        var st = HeadScanState()
        var stepped: HeadParseResult<HTTPRequestHead> = .incomplete
        var n = 0
        while n < d.count {
            n += 1
            stepped = requestParser.parse(UnsafeRawBufferPointer(rebasing: d[0..<n]), resuming: &st)
            if case .incomplete = stepped { continue }
            break
        }
        switch (whole, stepped) {
        case (.complete(let a, let ca), .complete(let b, let cb)):
            check(ca == cb && a.method == b.method && a.target == b.target && a.headers.count == b.headers.count, "request head whole vs stepped")
            if case .chunked = a.framing { chunked(UnsafeRawBufferPointer(rebasing: d[ca...])) }
        case (.failure, .failure), (.incomplete, .incomplete): break
        default: check(false, "request head whole vs stepped outcome")
        }
    }

    static func chunked(_ d: UnsafeRawBufferPointer) {
        var one = ChunkedDecoder(maxBodyBytes: 1 << 20)
        var body1: [UInt8] = []
        let r1 = one.feed(d) { body1.append(contentsOf: $0) }
        let cut = d.isEmpty ? 0 : Int(d[0]) % (d.count + 1)
        var two = ChunkedDecoder(maxBodyBytes: 1 << 20)
        var body2: [UInt8] = []
        var r2 = two.feed(UnsafeRawBufferPointer(rebasing: d[0..<cut])) { body2.append(contentsOf: $0) }
        if case .needMore = r2 {
            r2 = two.feed(UnsafeRawBufferPointer(rebasing: d[cut...])) { body2.append(contentsOf: $0) }
            if case .finished(let c) = r2 { r2 = .finished(consumed: c + cut) }
        }
        switch (r1, r2) {
        case (.finished(let a), .finished(let b)): check(a == b && body1 == body2, "chunked whole vs split")
        case (.needMore, .needMore): check(body1 == body2, "chunked partial body")
        case (.invalid, .invalid), (.tooLarge, .tooLarge): break
        default: check(false, "chunked outcome whole vs split: \(r1) \(r2)")
        }
    }

    /// Response head, chunked body, and the SSE decoder (events whole vs split).
    static func response(_ d: UnsafeRawBufferPointer) {
        if case .complete(let h, let consumed) = HTTPResponseParser().parse(d, requestMethod: "POST") {
            if case .chunked = h.framing { chunked(UnsafeRawBufferPointer(rebasing: d[consumed...])) }
        }
        // The head whole vs as it arrives, under a limit inputs reach: the answer for the first
        // prefix that decides (one ending in a LF, or one byte past the limit: where an answer
        // can change) is the whole input's.
        let small = HTTPResponseParser(maxHeaderBytes: 256)
        let whole = small.parse(d, requestMethod: "POST")
        var stepped: HeadParseResult<HTTPResponseHead> = .incomplete
        for n in 1...max(1, d.count) where n == d.count || n == small.maxHeaderBytes + 1 || d[n - 1] == 10 {
            stepped = small.parse(UnsafeRawBufferPointer(rebasing: d[0..<min(n, d.count)]), requestMethod: "POST")
            if case .incomplete = stepped { continue }
            break
        }
        switch (whole, stepped) {
        case (.complete(let a, let ca), .complete(let b, let cb)):
            check(ca == cb && a.status == b.status && a.headers.count == b.headers.count, "response head whole vs stepped")
        case (.failure, .failure), (.incomplete, .incomplete): break
        default: check(false, "response head whole vs stepped outcome")
        }
        // An oversized event ends decoding (the caller forwards raw bytes from then on): both
        // feeds stop there, having produced the same events.
        var a = SSEDecoder(maxEventBytes: 4096)
        var eventsA: [[UInt8]] = []
        let overA = a.feed(d) { eventsA.append(Array($0)) } == .eventTooLarge
        var b = SSEDecoder(maxEventBytes: 4096)
        var eventsB: [[UInt8]] = []
        var overB = false
        var i = 0
        var step = 1
        while i < d.count && !overB {
            let j = min(d.count, i + step)
            overB = b.feed(UnsafeRawBufferPointer(rebasing: d[i..<j])) { eventsB.append(Array($0)) } == .eventTooLarge
            i = j
            step = step % 7 + 1
        }
        check(overA == overB && eventsA == eventsB, "SSE whole vs split")
        for e in eventsA { e.withUnsafeBytes { _ = SSEDecoder.data(of: $0) } }
    }

    static let secret = Array("fuzz-secret-0123456789abcdef0123".utf8)
    nonisolated(unsafe) static let verifier: JWTVerifier = {   // (one thread: libFuzzer runs inputs serially)
        var keys = [VerificationKey(kid: "hs", algorithm: .HS256, material: .secret(secret)),
                    VerificationKey(kid: "hs5", algorithm: .HS512, material: .secret(secret))]
        for (kid, alg, pem) in [("rs", JWSAlgorithm.RS256, rsaPEM), ("ps", .PS256, rsaPEM), ("es", .ES256, p256PEM),
                                ("es3", .ES384, p384PEM), ("ed", .EdDSA, edPEM)] {
            if let k = KeyMaterial.publicKey(pem: Array(pem.utf8)) { keys.append(VerificationKey(kid: kid, algorithm: alg, material: .publicKey(k))) }
        }
        var c = JWTConfiguration()
        c.cacheSize = 0
        return JWTVerifier(config: c, ring: JWTKeyRing(KeySet(keys)), now: { 1_800_000_000 })
    }()

    /// Tokens as sent (any bytes), and payloads signed here with the HS256 key so the claims
    /// reader is reached; JWKS documents through the key-set parser.
    static func jwt(_ d: UnsafeRawBufferPointer) {
        guard let mode = d.first else { return }
        let rest = Array(d.dropFirst())
        switch mode % 3 {
        case 0:
            _ = verifier.verify(String(decoding: rest, as: UTF8.self))
        case 1:
            let input = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzIn0." + Base64URL.encode(rest)
            var mac = [UInt8](repeating: 0, count: 32)
            var len: UInt32 = 0
            _ = secret.withUnsafeBytes { k in
                Array(input.utf8).withUnsafeBytes { m in
                    HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.baseAddress?.assumingMemoryBound(to: UInt8.self), m.count, &mac, &len)
                }
            }
            _ = verifier.verify(input + "." + Base64URL.encode(mac))
        default:
            _ = try? KeySetLoader.parseJWKS(rest, origin: "fuzz")
        }
    }

    static let outerNames: JSONNames = ["model", "usage", "stream"]
    static let innerNames: JSONNames = ["total_tokens", "model"]

    /// Strict parse → write → parse gives the same value; the lenient scan agrees with the
    /// strict one on what the strict one accepts.
    static func json(_ d: UnsafeRawBufferPointer) {
        guard let v = try? JSONReader.parse(d) else { return }
        let written = JSONWriter.bytes(v)
        guard let again = try? JSONReader.parse(written) else { return check(false, "written JSON does not parse") }
        check(JSONWriter.bytes(again) == written, "JSON write → parse → write is not stable")
        if case .object = v, let strict = try? JSONReader.topLevelMembers(["model", "usage", "stream"], in: d) {
            let lenient = JSONReader.lenientTopLevelMembers(["model", "usage", "stream"], in: d)
            check(lenient?.members == strict.members, "lenient scan disagrees with the strict reader")
            // The guarded scan may give up (then the strict reader decides) but never disagrees.
            if let g = JSONReader.lenientTopLevelMembers(["model", "usage", "stream"], in: d, guarded: true) {
                check(g.members == strict.members && g.isEmpty == strict.isEmpty && g.afterBrace == strict.afterBrace,
                      "guarded scan disagrees with the strict reader")
            }
            // One pass finding the members of `usage` (when it is an object) finds what two do.
            if let (o, n) = try? JSONReader.topLevelMembers(outerNames, in: d, nestedIn: 1, innerNames) {
                check(o.members == strict.members && o.afterBrace == strict.afterBrace, "the one-pass reader disagrees on the outer object")
                var alone: [Range<Int>?]? = nil
                if let u = strict.member(1), d[u.lowerBound] == UInt8(ascii: "{"),
                   let two = try? JSONReader.topLevelMembers(innerNames.strings, in: UnsafeRawBufferPointer(rebasing: d[u])) {
                    alone = two.members.map { $0.map { ($0.lowerBound + u.lowerBound)..<($0.upperBound + u.lowerBound) } }
                }
                check(n?.members == alone, "the one-pass reader disagrees on the nested object")
            } else {
                check(false, "the one-pass reader refuses what the strict parser accepts")
            }
            // Stopping once every name is found changes nothing about what was found.
            if let u = JSONReader.lenientTopLevelMembers(["model", "usage", "stream"], in: d, untilFound: true) {
                for (k, r) in u.members.enumerated() where r != nil {
                    check(r == strict.members[k], "an early-stopping scan disagrees with the strict reader")
                }
            }
        }
    }

    /// OpenAI request → Anthropic request, Anthropic response → OpenAI, and an Anthropic event
    /// stream → OpenAI chunks: every output the gateway would send must be valid JSON.
    static func anthropic(_ d: UnsafeRawBufferPointer) {
        let bytes = Array(d)
        if case .success(let out) = AnthropicRequest.translate(bytes, model: "claude", defaultMaxTokens: 1024) {
            check((try? JSONReader.parse(out)) != nil, "translated request is not JSON")
        }
        if case .success(let out) = AnthropicResponse.translate(bytes, created: 1) {
            check((try? JSONReader.parse(out)) != nil, "translated response is not JSON")
        }
        var t = AnthropicStreamTranslator(created: 1, includeUsage: true)
        var sse = SSEDecoder(maxEventBytes: 1 << 16)
        _ = sse.feed(d) { event in
            SSEDecoder.withData(of: event) { data in
                check(data.map { Array($0) } == SSEDecoder.data(of: event), "withData(of:) and data(of:) differ")
                guard let data else { return }
                // The fast path (a text delta copied as written) against the strict path.
                var strict = t
                let out = t.translate(data: data)
                let reference = strict.translateValues(data)
                let (got, want) = (payloads(out), payloads(reference))
                // The one difference allowed: a repeated name the fast path does not read, which
                // the strict reader refuses (the event is then dropped) and the fast path leaves
                // to the provider.
                var repeatedName = false
                do throws(JSONReader.Failure) { _ = try JSONReader.parse(data) } catch {
                    repeatedName = error.reason.hasPrefix("duplicate member name")
                }
                if !(repeatedName && want.isEmpty) {
                    check(got.count == want.count, "the fast path's events differ from the strict path's")
                    for (a, b) in zip(got, want) {
                        check(a == b || ((try? JSONReader.parse(a)) != nil && (try? JSONReader.parse(a)) == (try? JSONReader.parse(b))),
                              "the fast path's chunk differs from the strict path's")
                    }
                }
                for p in got where p != Array("[DONE]".utf8) {
                    check((try? JSONReader.parse(p)) != nil, "translated stream event is not JSON")
                }
            }
        }
    }

    /// The data of each event in `sse`.
    static func payloads(_ sse: [UInt8]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        sse.withUnsafeBytes { o in
            var dec = SSEDecoder()
            _ = dec.feed(o) { ev in if let p = SSEDecoder.data(of: ev) { out.append(p) } }
        }
        return out
    }

    /// The config loader: any text gives a configuration or an error naming file:line:col.
    static func config(_ d: UnsafeRawBufferPointer) {
        do {
            _ = try ConfigurationLoader.parse(String(decoding: d, as: UTF8.self), file: "fuzz.yaml", environment: [:])
        } catch {
            check("\(error)".hasPrefix("fuzz.yaml:"), "config error without file:line:col: \(error)")
        }
    }

    static let rsaPEM = """
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1xc9j9OLQNurk4z5tLgU
02cWgA7yMRhJTjmTonZQWEBMOlxA+SfHBvx+QsYYtkgFqnxTN0VstlH0AY2UBzpv
cpyhgVRhqbE99RJr6qhifWYBJkAlYKtfugkH4i4rnMezibcpLdXmLuEPKf4EG2lw
txKcSy9PtvZbTjXqy84U66BOxc9HwBdv3d4W6N0ae5RFzy1gb4MFBYdLjiOQ413C
cTGhpXyQTMwPjP+czwP0z3Fv4T2lIgNlmIIEWmJeUQdcSA35ByDAVjE+1KtyQBDZ
ASvtgA/HZ8doN+syz58y7SAOOdUfAWMmd0+s8F+wyiRZTSLYwX5nOYYzjRM6NtHv
lQIDAQAB
-----END PUBLIC KEY-----
"""
    static let p256PEM = """
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9864dKTLUyjT9Nvyj5GQL6ux5Yqd
rRGCVwo4fQH2UHECtXqFthPvLgL9Wgw6Qy/d1mIajhsZLSBFfaN/Kkc6Vw==
-----END PUBLIC KEY-----
"""
    static let p384PEM = """
-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEyu3o/8kb/JpF86Dy9hGQYvu1DfdklUV1
VY/kQCsc4M3KlzMyYPDnjtnlj+kKVYF5EespzubbNRksfM7UXmSkXiimK4qHXS1q
MHOa9uDYK7XudexVjP8xciFTRovKYm+L
-----END PUBLIC KEY-----
"""
    static let edPEM = """
-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAP7yZBOTEOwzRKxO8uYBZqQJN0H91YoJNbscRQ+wAS0E=
-----END PUBLIC KEY-----
"""
}

#if FUZZING
nonisolated(unsafe) var selected: FuzzTarget = .request

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    let name = getenv("PORTCULLIS_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let t = FuzzTarget(rawValue: name) else {
        var line = "set PORTCULLIS_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: " "))\n"
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
        exit(2)
    }
    selected = t
    // One-time state (keys, parsers, Swift's lazy globals) is built before the first input, so
    // LeakSanitizer does not count it as a leak of that input.
    _ = Fuzz.verifier
    for seed in ["{}", "eyJ", "\u{0}{\"keys\":[]}"] { Array(seed.utf8).withUnsafeBytes { t.run($0) } }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    selected.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// SwiftPM links an executable's `main` to this module's entry point, so libFuzzer is started
/// through its driver API rather than its own `main`.
@main
struct FuzzMain {
    static func main() {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzerTestOneInput(data, size) })
    }
}
#else
@main
struct Replay {
    /// `PortcullisFuzz TARGET FILE|DIR...`: every input once; `PortcullisFuzz` alone lists targets.
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        guard let name = args.first, let target = FuzzTarget(rawValue: name) else {
            for t in FuzzTarget.allCases { print(t.rawValue) }
            exit(args.isEmpty ? 0 : 2)
        }
        var count = 0
        for path in args.dropFirst() {
            for file in files(path) {
                guard let bytes = FileReader.bytes(file, limit: 1 << 22) else { continue }
                bytes.withUnsafeBytes { target.run($0) }
                count += 1
            }
        }
        print("\(target.rawValue): \(count) input(s) replayed, no finding")
    }

    static func files(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [path] }
        defer { closedir(dir) }
        var out: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { out.append(path + "/" + name) }
        }
        return out.sorted()
    }
}
#endif
