import XCTest
import PortcullisCore
import PortcullisConfig
import PortcullisHTTP
@testable import PortcullisPipeline

/// The middleware chain without sockets: order, early answers, and the suspend/resume path the
/// Redis limiter will use (a stage parks the request, an async reply resumes it later).
final class PipelineTests: XCTestCase {
    final class Recorder: Middleware {
        let name: String
        let decide: (RequestContext) -> MiddlewareDecision
        init(_ name: String, _ decide: @escaping (RequestContext) -> MiddlewareDecision = { _ in .next }) {
            self.name = name; self.decide = decide
        }
        func process(_ context: RequestContext) -> MiddlewareDecision {
            context.user = (context.user ?? "") + name
            return decide(context)
        }
    }

    func context() throws -> RequestContext {
        let config = try ConfigurationLoader.parse("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /v1/*, provider: p } ]\n",
                                                   file: "t.yaml")
        let bytes = Array("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Tenant-Id: spoof\r\nConnection: keep-alive, x-drop\r\nX-Drop: 1\r\n\r\n".utf8)
        guard case .complete(let head, _) = bytes.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else {
            throw XCTSkip("parse failed")
        }
        return RequestContext(requestID: RequestID("rid"), head: head, body: [], clientAddress: "10.0.0.1", startNanos: 0, configuration: config)
    }

    func testRunsInOrderAndProceeds() throws {
        let ctx = try context()
        var outcomes: [String] = []
        let p = Pipeline([Recorder("a"), Recorder("b"), Recorder("c")])
        XCTAssertNil(p.run(ctx) { o in if case .proceed = o { outcomes.append("proceed") } })
        XCTAssertEqual(ctx.user, "abc")
        XCTAssertEqual(outcomes, ["proceed"])
    }

    func testEarlyAnswerStopsTheChain() throws {
        let ctx = try context()
        var status = 0
        let p = Pipeline([Recorder("a"), Recorder("b") { _ in .respond(LocalResponse(.forbidden("no"))) }, Recorder("c")])
        p.run(ctx) { o in if case .respond(let r) = o { status = r.status } }
        XCTAssertEqual(ctx.user, "ab")
        XCTAssertEqual(status, 403)
    }

    func testSuspendThenResumeContinuesWithTheNextStage() throws {
        let ctx = try context()
        var calls = 0
        let limiter = Recorder("L")
        var parked: PipelineResumer?
        let suspending = Recorder("S") { ctx in parked = ctx.suspend(); return .suspend }
        let p = Pipeline([limiter, suspending, Recorder("z")])
        let handle = p.run(ctx) { o in if case .proceed = o { calls += 1 } }
        XCTAssertNotNil(handle)
        XCTAssertEqual(calls, 0, "nothing completes while suspended")
        XCTAssertEqual(ctx.user, "LS")
        parked?.resume(.next)            // e.g. the Redis reply arrived: under the limit
        XCTAssertEqual(ctx.user, "LSz")
        XCTAssertEqual(calls, 1)
    }

    func testResumeWithAnAnswer() throws {
        let ctx = try context()
        var status = 0
        var parked: PipelineResumer?
        let p = Pipeline([Recorder("S") { ctx in parked = ctx.suspend(); return .suspend }, Recorder("never")])
        p.run(ctx) { o in if case .respond(let r) = o { status = r.status } }
        parked?.resume(.respond(LocalResponse(.tooManyRequests("slow down", retryAfterSeconds: 7))))
        XCTAssertEqual(status, 429)
        XCTAssertEqual(ctx.user, "S")
    }

    func testCancelledSuspensionNeverCompletes() throws {
        let ctx = try context()
        var completed = false
        var parked: PipelineResumer?
        let p = Pipeline([Recorder("S") { ctx in parked = ctx.suspend(); return .suspend }])
        let handle = p.run(ctx) { _ in completed = true }
        handle?.cancel()                  // the client went away
        XCTAssertEqual(parked?.isPending, false)
        XCTAssertFalse(completed)
    }

    func testRouteAndHeaderHygiene() throws {
        let ctx = try context()
        var proceeded = false
        Pipeline([RouteMiddleware(), HeaderHygieneMiddleware()]).run(ctx) { o in if case .proceed = o { proceeded = true } }
        XCTAssertTrue(proceeded)
        XCTAssertEqual(ctx.provider?.name, "p")
        let names = ctx.upstreamHeaders.map(\.name)
        XCTAssertFalse(names.contains("x-tenant-id"))
        XCTAssertFalse(names.contains("x-drop"), "a header named in Connection is hop-by-hop")
        XCTAssertFalse(names.contains("connection"))
        XCTAssertEqual(ctx.upstreamHeaders.first { $0.name == "x-forwarded-for" }?.value, "10.0.0.1")
        XCTAssertEqual(ctx.upstreamHeaders.first { $0.name == "x-request-id" }?.value, "rid")
        let lines = String(decoding: ctx.upstreamHeaderLines, as: UTF8.self)
        XCTAssertTrue(lines.hasSuffix("x-request-id: rid\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n"), lines)
        XCTAssertEqual(lines.components(separatedBy: "\r\n").count - 1, ctx.upstreamHeaders.count, "one CRLF per line")
    }

    /// What a client's `Connection` lists is dropped in any case and underscore spelling; what it
    /// lists that is hop-by-hop or the gateway's anyway (`keep-alive`, what every HTTP/1.1
    /// library sends) changes nothing else; names only alike are kept.
    func testConnectionListedNamesAreDroppedInEverySpelling() throws {
        let config = try ConfigurationLoader.parse("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /v1/*, provider: p } ]\n",
                                                   file: "t.yaml")
        let bytes = Array(("POST /v1/x HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, , X_Drop ,\tUpgrade, x-tenant-id\r\n"
            + "x-drop: 1\r\nX-DROP-NOT: 2\r\nx_drop: 3\r\nKeep_Alive: 4\r\nx-stainless-os: Linux\r\nX-Dro: 5\r\nUpgrade: h2c\r\n"
            + "X-Tenant_Id: evil\r\n\r\n").utf8)
        guard case .complete(let head, _) = bytes.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { return XCTFail("parse") }
        let ctx = RequestContext(requestID: RequestID("rid"), head: head, body: [], clientAddress: "10.0.0.1", startNanos: 0, configuration: config)
        Pipeline([RouteMiddleware(), HeaderHygieneMiddleware(adding: [])]).run(ctx) { _ in }
        XCTAssertEqual(String(decoding: ctx.upstreamHeaderLines, as: UTF8.self), "x-drop-not: 2\r\nx-stainless-os: Linux\r\nx-dro: 5\r\n")
    }

    /// Kept lines go upstream in runs (adjacent `name: value\r\n` lines copied in one piece,
    /// names lowercased after): for heads made of every mix of plain, oddly spaced, dropped and
    /// upper-case lines, the bytes are exactly the line-by-line rule's.
    func testKeptLinesInRunsAreTheLineByLineBytes() throws {
        let config = try ConfigurationLoader.parse("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /v1/*, provider: p } ]\n",
                                                   file: "t.yaml")
        // (line as sent, line as forwarded or nil when dropped)
        let pool: [(String, String?)] = [("X-A: 1", "x-a: 1"), ("x-b:2", "x-b: 2"), ("X-C: three ", "x-c: three"),
                                         ("Connection: keep-alive", nil), ("X-Tenant-Id: t", nil), ("User-Agent: ua/1", "user-agent: ua/1"),
                                         ("X_Up: u", "x_up: u"), ("Keep-Alive: 5", nil), ("x-d:\tv", "x-d: v"),
                                         ("X-STAINLESS-PACKAGE-VERSION: 3.57.0", "x-stainless-package-version: 3.57.0"),
                                         ("x-e: ", "x-e: "), ("ACCEPT: */*", "accept: */*")]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<600 {
            let lines = (0..<Int.random(in: 1...9, using: &rng)).map { _ in pool[Int.random(in: 0..<pool.count, using: &rng)] }
            let text = "POST /v1/x HTTP/1.1\r\nHost: x\r\n" + lines.map { $0.0 + "\r\n" }.joined() + "\r\n"
            let bytes = Array(text.utf8)
            guard case .complete(let head, _) = bytes.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { return XCTFail(text) }
            let ctx = RequestContext(requestID: RequestID("rid"), head: head, body: [], clientAddress: "10.0.0.1", startNanos: 0, configuration: config)
            Pipeline([RouteMiddleware(), HeaderHygieneMiddleware(adding: [])]).run(ctx) { _ in }
            let want = lines.compactMap(\.1).map { $0 + "\r\n" }.joined()
            if String(decoding: ctx.upstreamHeaderLines, as: UTF8.self) != want {
                return XCTFail("\(text.debugDescription): \(String(decoding: ctx.upstreamHeaderLines, as: UTF8.self).debugDescription)")
            }
        }
    }

    /// `server.upstream_headers` chooses the added lines; the client's copies of them (and its
    /// identity headers) are dropped whatever it lists.
    func testUpstreamHeadersChooseTheAddedLines() throws {
        let config = try ConfigurationLoader.parse("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /v1/*, provider: p } ]\n",
                                                   file: "t.yaml")
        let bytes = Array("POST /v1/x HTTP/1.1\r\nHost: x\r\nX-Request-Id: client\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Tenant-Id: spoof\r\nX-Keep: 1\r\n\r\n".utf8)
        guard case .complete(let head, _) = bytes.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { return XCTFail("parse") }
        for (added, tail) in [(AddedHeaders(), ""), ([.requestID], "x-request-id: rid\r\n"),
                              ([.forwarded], "x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n")] as [(AddedHeaders, String)] {
            let ctx = RequestContext(requestID: RequestID("rid"), head: head, body: [], clientAddress: "10.0.0.1", startNanos: 0, configuration: config)
            Pipeline([RouteMiddleware(), HeaderHygieneMiddleware(adding: added)]).run(ctx) { _ in }
            XCTAssertEqual(String(decoding: ctx.upstreamHeaderLines, as: UTF8.self), "x-keep: 1\r\n" + tail)
        }
    }

    /// A kept line is the client's bytes: the name lowercased, `: ` after it, the value without
    /// surrounding whitespace and byte for byte (obs-text included, not "repaired" as UTF-8).
    func testKeptLinesAreTheClientsBytes() throws {
        let config = try ConfigurationLoader.parse("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /v1/*, provider: p } ]\n",
                                                   file: "t.yaml")
        let bytes = Array("POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: Application/JSON\r\nX-Tight:v\r\nX-Wide: \t spaced out \t\r\nX-Bin: a".utf8)
            + [0xC3, 0x28, 0xFF] + Array("\r\nOpenAI-Organization: org-1\r\n\r\n".utf8)
        guard case .complete(let head, _) = bytes.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { return XCTFail("parse") }
        XCTAssertEqual(head.first("openai-organization"), "org-1")
        XCTAssertEqual(head.first("OPENAI-organization".lowercased()), "org-1")
        XCTAssertNil(head.first("openai-org"))
        XCTAssertEqual(head.count(.contentType), 1)
        let ctx = RequestContext(requestID: RequestID("rid"), head: head, body: [], clientAddress: "10.0.0.1", startNanos: 0, configuration: config)
        Pipeline([RouteMiddleware(), HeaderHygieneMiddleware()]).run(ctx) { _ in }
        let expected = Array("content-type: Application/JSON\r\nx-tight: v\r\nx-wide: spaced out\r\nx-bin: a".utf8) + [0xC3, 0x28, 0xFF]
            + Array("\r\nopenai-organization: org-1\r\n".utf8)
        XCTAssertEqual(Array(ctx.upstreamHeaderLines.prefix(expected.count)), expected,
                       String(decoding: ctx.upstreamHeaderLines, as: UTF8.self))
    }

    /// The lines are written in a scratch sized from the head: the densest head (hundreds of
    /// empty `A:` fields, each line growing by its `: `), a minted id and the longest client
    /// address fit, byte for byte.
    func testDensestHeadFitsTheScratch() throws {
        let config = try ConfigurationLoader.parse("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /v1/*, provider: p } ]\n",
                                                   file: "t.yaml")
        let bytes = Array("POST /v1/x HTTP/1.1\r\nHost: x\r\n".utf8) + Array(repeating: Array("A:\r\nBb:\tc\r\n".utf8), count: 300).flatMap { $0 }
            + Array("\r\n".utf8)
        guard case .complete(let head, _) = bytes.withUnsafeBytes({ HTTPRequestParser(limits: HTTPParserLimits(maxHeaderBytes: 65536, maxHeaderCount: 1000)).parse($0) })
        else { return XCTFail("parse") }
        let address = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
        let id = RequestID(high: .max, low: 1)
        let ctx = RequestContext(requestID: id, head: head, body: [], clientAddress: address, startNanos: 0, configuration: config)
        Pipeline([RouteMiddleware(), HeaderHygieneMiddleware()]).run(ctx) { _ in }
        let expected = String(repeating: "a: \r\nbb: c\r\n", count: 300)
            + "x-request-id: \(id)\r\nx-forwarded-for: \(address)\r\nx-forwarded-proto: http\r\n"
        XCTAssertEqual(String(decoding: ctx.upstreamHeaderLines, as: UTF8.self), expected)
    }

    /// The limiter and the router share one scan of the body's members; any change to the body
    /// (a clamp, an added `stream_options`) makes the next reader scan the new bytes.
    func testBodyMembersAreRescannedAfterAnEdit() throws {
        let ctx = try context()
        ctx.body = Array(#"{"model":"a","max_tokens":5,"stream":true}"#.utf8)
        let first = try ctx.bodyMembers()
        XCTAssertEqual(first.member(RequestContext.BodyMember.model).map { String(decoding: ctx.body[$0], as: UTF8.self) }, "\"a\"")
        XCTAssertEqual(first.member(RequestContext.BodyMember.stream).map { String(decoding: ctx.body[$0], as: UTF8.self) }, "true")
        XCTAssertNil(first.member(RequestContext.BodyMember.streamOptions))
        ctx.body = Array(#"{"stream_options":{"include_usage":true},"model":"bb","max_tokens":7}"#.utf8)
        let second = try ctx.bodyMembers()
        XCTAssertEqual(second.member(RequestContext.BodyMember.model).map { String(decoding: ctx.body[$0], as: UTF8.self) }, "\"bb\"")
        XCTAssertEqual(second.member(RequestContext.BodyMember.maxTokens).map { String(decoding: ctx.body[$0], as: UTF8.self) }, "7")
        XCTAssertNil(second.member(RequestContext.BodyMember.stream))
        XCTAssertNotNil(second.member(RequestContext.BodyMember.streamOptions))
        ctx.body = Array("{\"model\":".utf8)
        XCTAssertThrowsError(try ctx.bodyMembers())
        XCTAssertThrowsError(try ctx.bodyMembers(), "the failure is remembered too")
        ctx.body[0] = UInt8(ascii: " ")
        ctx.body = Array(#"{"model":"c"}"#.utf8)
        XCTAssertNotNil(try ctx.bodyMembers().member(RequestContext.BodyMember.model))
    }

    func testUnknownRouteIs404() throws {
        let config = try ConfigurationLoader.parse("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /other, provider: p } ]\n", file: "t.yaml")
        let ctx = try context()
        let c2 = RequestContext(requestID: RequestID("r"), head: ctx.head, body: [], clientAddress: "x", startNanos: 0, configuration: config)
        var status = 0
        Pipeline([RouteMiddleware()]).run(c2) { o in if case .respond(let r) = o { status = r.status } }
        XCTAssertEqual(status, 404)
    }

    /// The target and route stages keep their last answer for repeats (one pipeline serves a
    /// worker's requests in turn): a repeat gets the same answer, and anything that differs —
    /// the target, the method, the configuration — is decided afresh, on one parser state as a
    /// keep-alive connection uses it.
    func testKeptAnswersOnlyServeExactRepeats() throws {
        let yaml = """
            providers: { p: { base_url: 'http://127.0.0.1:1' }, q: { base_url: 'http://127.0.0.1:2' } }
            routes: [ { path: /v1/a, provider: p, methods: [POST] }, { path: /v1/*, provider: q } ]
            """
        let config = try ConfigurationLoader.parse(yaml, file: "t.yaml")
        let other = try ConfigurationLoader.parse(yaml.replacingOccurrences(of: "/v1/a,", with: "/v1/z,"), file: "t.yaml")
        let pipeline = Pipeline([RequestTargetMiddleware(), RouteMiddleware()])
        var scan = HeadScanState()
        func run(_ line: String, _ conf: GatewayConfiguration? = nil) -> (status: Int, provider: String?, path: String) {
            let bytes = Array("\(line) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            guard case .complete(let head, _) = bytes.withUnsafeBytes({ HTTPRequestParser().parse($0, resuming: &scan) }) else {
                XCTFail(line); return (0, nil, "")
            }
            scan.nextHead()
            let ctx = RequestContext(requestID: RequestID("r"), head: head, body: [], clientAddress: "x", startNanos: 0, configuration: conf ?? config)
            var status = 0
            pipeline.run(ctx) { o in
                switch o { case .respond(let r): status = r.status; case .proceed: status = 200 }
            }
            return (status, ctx.provider?.name, ctx.path)
        }
        for _ in 0..<2 {
            XCTAssertEqual(run("POST /v1/a").provider, "p")
            XCTAssertEqual(run("POST /v1/a").provider, "p")
            XCTAssertEqual(run("GET /v1/a").status, 405)
            XCTAssertEqual(run("POST /v1/./b//c").path, "/v1/b/c")
            XCTAssertEqual(run("POST /v1/./b//c").provider, "q")
            XCTAssertEqual(run("POST /v1/a/../a").provider, "p")
            XCTAssertEqual(run("POST /v1/a", other).provider, "q")
            XCTAssertEqual(run("POST /v2/a").status, 404)
            XCTAssertEqual(run("POST /v1/%2e%2e/x").status, 400)
            XCTAssertEqual(run("POST /v1/a").provider, "p")
        }
    }
}

/// A middleware whose asynchronous work finishes at once (a cached reply) resumes from inside
/// `process()`; the pipeline must carry on exactly once, without nesting or trapping.
final class SynchronousResumeTests: XCTestCase {
    final class Stage: Middleware {
        let name: String
        let body: (RequestContext) -> MiddlewareDecision
        var calls = 0
        init(_ name: String, _ body: @escaping (RequestContext) -> MiddlewareDecision) { self.name = name; self.body = body }
        func process(_ ctx: RequestContext) -> MiddlewareDecision { calls += 1; return body(ctx) }
    }

    func context() throws -> RequestContext {
        let config = try ConfigurationLoader.parse("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /x, provider: p } ]\n", file: "t")
        let raw = Array("GET /x HTTP/1.1\r\nHost: h\r\n\r\n".utf8)
        guard case .complete(let head, _) = raw.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { throw XCTSkip() }
        return RequestContext(requestID: RequestID("r"), head: head, body: [], clientAddress: "127.0.0.1", startNanos: 0, configuration: config)
    }

    func testResumeNextInsideProcessContinues() throws {
        let sync = Stage("sync") { ctx in ctx.suspend().resume(.next); return .suspend }
        let after = Stage("after") { _ in .next }
        var outcomes: [String] = []
        let r = Pipeline([sync, after]).run(try context()) { o in
            if case .proceed = o { outcomes.append("proceed") } else { outcomes.append("respond") }
        }
        XCTAssertNil(r, "nothing is pending")
        XCTAssertEqual(outcomes, ["proceed"])
        XCTAssertEqual(after.calls, 1)
    }

    func testResumeRespondInsideProcessAnswers() throws {
        let sync = Stage("sync") { ctx in ctx.suspend().resume(.respond(LocalResponse(.tooManyRequests("x", retryAfterSeconds: 1)))); return .suspend }
        let after = Stage("after") { _ in .next }
        var statuses: [Int] = []
        _ = Pipeline([sync, after]).run(try context()) { o in if case .respond(let l) = o { statuses.append(l.status) } }
        XCTAssertEqual(statuses, [429])
        XCTAssertEqual(after.calls, 0)
    }

    func testTwoSynchronousStagesInARow() throws {
        let a = Stage("a") { ctx in ctx.suspend().resume(.next); return .suspend }
        let b = Stage("b") { ctx in ctx.suspend().resume(.next); return .suspend }
        var n = 0
        _ = Pipeline([a, b]).run(try context()) { _ in n += 1 }
        XCTAssertEqual(n, 1)
    }
}

final class CancelledResumeTests: XCTestCase {
    /// The Redis reply arrives after the client left: resuming a cancelled suspension is a no-op.
    func testResumeAfterCancelIsIgnored() throws {
        let config = try ConfigurationLoader.parse("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /x, provider: p } ]\n", file: "t")
        let raw = Array("GET /x HTTP/1.1\r\nHost: h\r\n\r\n".utf8)
        guard case .complete(let head, _) = raw.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { throw XCTSkip() }
        let ctx = RequestContext(requestID: RequestID("r"), head: head, body: [], clientAddress: "a", startNanos: 0, configuration: config)
        final class Park: Middleware {
            let name = "park"
            var parked: PipelineResumer?
            func process(_ ctx: RequestContext) -> MiddlewareDecision { parked = ctx.suspend(); return .suspend }
        }
        let park = Park()
        var completions = 0
        let r = Pipeline([park]).run(ctx) { _ in completions += 1 }
        r?.cancel()
        park.parked?.resume(.next)
        XCTAssertEqual(completions, 0)
    }
}

/// The OpenAI error shape lives with the gateway's API layer, not in the codec.
final class OpenAIErrorShapeTests: XCTestCase {
    func testErrorBodiesAreOpenAIShaped() {
        let e = GatewayError.badRequest("Bad \"thing\"\n")
        XCTAssertEqual(e.jsonBody, #"{"error":{"message":"Bad \"thing\"\n","type":"invalid_request_error","param":null,"code":"bad_request"}}"#)
        XCTAssertEqual(LocalResponse(e).body, Array(e.jsonBody.utf8))
        XCTAssertEqual(GatewayError.modelNotFound("m").code, "model_not_found")
    }
}

extension RequestContext {
    /// The upstream header lines read back as fields.
    var upstreamHeaders: [HTTPHeader] {
        var out: [HTTPHeader] = []
        var line = upstreamHeaderLines[...]
        while let cr = line.firstIndex(of: 13) {
            let text = line[line.startIndex..<cr]
            if let colon = text.firstIndex(of: 58) {
                out.append(HTTPHeader(name: String(decoding: text[..<colon], as: UTF8.self),
                                      value: String(decoding: text[(colon + 2)...], as: UTF8.self)))
            }
            line = line[(cr + 2)...]
        }
        return out
    }
}
