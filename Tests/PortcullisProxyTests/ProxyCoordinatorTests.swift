import XCTest
import PortcullisCore
import PortcullisHTTP
import PortcullisConfig
import PortcullisPipeline
import PortcullisUpstream
@testable import PortcullisRouter
@testable import PortcullisProxy

/// The proxy coordinator's decisions, driven without sockets: a scripted attempt starter stands
/// in for the upstream client and the test plays the provider's side through the delegate.
final class ProxyCoordinatorTests: XCTestCase {
    final class Sink: ResponseSink {
        var flushes = 0
        func flushQueued() { flushes += 1 }
        let output = ByteBuffer(capacity: 1024)
        var local: [LocalResponse] = []
        var queued: Bool?
        var slow = false
        func outputAppended() -> Bool { !slow }
        func responseQueued(keepAlive: Bool) { queued = keepAlive }
        func respondLocal(_ r: LocalResponse) { local.append(r) }
        var isDraining: Bool { false }
        var text: String { String(decoding: output.readable, as: UTF8.self) }
    }

    final class Attempt: UpstreamAttempt {
        var isDone = false
        var paused = false, resumed = false, cancelled = false
        func pauseReading() { paused = true }
        func resumeReading() { resumed = true }
        func cancel() { cancelled = true; isDone = true }
    }

    final class Starter: UpstreamAttemptStarter {
        var started: [(provider: String, head: String, body: String, attempt: Attempt)] = []
        /// Failures to deliver synchronously from inside `startAttempt`, by provider name.
        var failAtOnce: [String: UpstreamFailure] = [:]
        weak var delegate: UpstreamResponseDelegate?
        func startAttempt(provider: ProviderConfiguration, timeouts: RouteTimeouts, method: String, head: __owned [UInt8],
                          body: __owned [UInt8], deadline: UInt64, delegate: UpstreamResponseDelegate) -> UpstreamAttempt {
            let a = Attempt()
            // The request as the provider reads it: the head up to its blank line, the body after
            // it (the coordinator may write a small body in the head's own bytes), whose length
            // the head's Content-Length must say.
            let request = String(decoding: head + body, as: UTF8.self)
            let parts = request.split(separator: "\r\n\r\n", maxSplits: 1, omittingEmptySubsequences: false)
            let (h, b) = (String(parts[0]) + "\r\n\r\n", parts.count > 1 ? String(parts[1]) : "")
            XCTAssertTrue(h.contains("content-length: \(b.utf8.count)\r\n") || (b.isEmpty && !h.contains("content-length")), h)
            started.append((provider.name, h, b, a))
            self.delegate = delegate
            if let f = failAtOnce[provider.name] { a.isDone = true; delegate.upstreamDidFail(f, phase: .beforeRequestWritten) }
            return a
        }
    }

    static let yaml = """
    providers:
      a: { base_url: "http://127.0.0.1:1", api_key_env: KEY_A }
      b: { base_url: "http://127.0.0.1:2/base" }
      c: { base_url: "http://127.0.0.1:3", api_key_env: KEY_MISSING }
    models:
      alias:
        tiers:
          t: [{ target: a/model-a }]
        fallback: [c/model-c, b/model-b]
        max_attempts: 3
    routing: { breaker: { failures: 1, cooldown: 10s } }
    routes:
      - { path: /v1/chat/completions }
      - { path: /plain, provider: b }
    """

    var config: GatewayConfiguration!
    var sink: Sink!
    var starter: Starter!
    var breakers: CircuitBreakers!
    var clock: UInt64 = 1_000
    var coordinator: ProxyCoordinator!

    override func setUpWithError() throws {
        config = try ConfigurationLoader.parse(Self.yaml, file: "t", environment: ["KEY_A": "sk-a"])
        sink = Sink()
        starter = Starter()
        breakers = CircuitBreakers(targets: config.models.targets.count, defaults: config.models.defaults)
        coordinator = ProxyCoordinator(sink: sink, starter: starter, breakers: breakers, metrics: nil, now: { [unowned self] in self.clock })
    }

    func context(path: String = "/v1/chat/completions", body: String = "{\"model\":\"alias\",\"stream\":true}") throws -> RequestContext {
        let raw = Array("POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n".utf8)
        guard case .complete(let head, _) = raw.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { throw XCTSkip("parse") }
        let ctx = RequestContext(requestID: RequestID("req-1"), head: head, body: Array(body.utf8), clientAddress: "127.0.0.1",
                                 startNanos: 0, configuration: config)
        ctx.tier = "t"
        for m: Middleware in [RequestTargetMiddleware(), RouteMiddleware(), HeaderHygieneMiddleware(), AliasRouterMiddleware()] {
            guard case .next = m.process(ctx) else { XCTFail("\(m.name) refused"); break }
        }
        return ctx
    }

    func head(_ text: String) -> HTTPResponseHead {
        let b = Array(text.utf8)
        guard case .complete(let h, _) = b.withUnsafeBytes({ HTTPResponseParser().parse($0, requestMethod: "POST") }) else {
            fatalError("bad test head")
        }
        return h
    }

    func body(_ s: String) -> Bool { Array(s.utf8).withUnsafeBytes { coordinator.upstreamDidReceiveBody($0) } }

    func testRetryableStatusIsHeldAndTheNextTargetAnswers() throws {
        coordinator.start(try context())
        XCTAssertEqual(starter.started.map(\.provider), ["a"])
        XCTAssertTrue(starter.started[0].head.contains("authorization: Bearer sk-a\r\n"))
        XCTAssertTrue(starter.started[0].body.contains("\"model\":\"model-a\""))
        coordinator.upstreamDidReceiveHead(head("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\n"))
        XCTAssertTrue(body("oops!"))
        XCTAssertEqual(sink.output.readableBytes, 0, "a retryable answer reached the client")
        coordinator.upstreamDidFinish()
        // c has no key (skipped, counted), so b is next: its base path, its model, no credential.
        XCTAssertEqual(starter.started.map(\.provider), ["a", "b"])
        XCTAssertTrue(starter.started[1].head.hasPrefix("POST /base/v1/chat/completions HTTP/1.1\r\n"))
        XCTAssertFalse(starter.started[1].head.contains("authorization"))
        XCTAssertEqual(starter.started[1].body, "{\"model\":\"model-b\",\"stream\":true}")
        coordinator.upstreamDidReceiveHead(head("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
        XCTAssertTrue(body("data: {}\n\n"))
        coordinator.upstreamDidFinish()
        XCTAssertEqual(sink.queued, true)
        XCTAssertTrue(sink.text.hasPrefix("HTTP/1.1 200 OK\r\n"))
        XCTAssertTrue(sink.text.contains("x-portcullis-provider: b\r\nx-portcullis-model: model-b\r\n"))
        XCTAssertTrue(sink.text.hasSuffix("\r\n\r\na\r\ndata: {}\n\n\r\n0\r\n\r\n"), sink.text)
        XCTAssertFalse(sink.text.contains("oops"))
        XCTAssertEqual(coordinator.attempts, 3)
        XCTAssertEqual(coordinator.outcome, "ok")
    }

    func testFailureBeforeHeadMovesOnAndTheLastFailureIsAnswered() throws {
        coordinator.start(try context())
        coordinator.upstreamDidFail(.connectFailed("refused"), phase: .beforeRequestWritten)
        XCTAssertEqual(starter.started.map(\.provider), ["a", "b"])
        coordinator.upstreamDidFail(.timeout(.firstByte), phase: .awaitingResponse)
        XCTAssertEqual(sink.local.map(\.status), [504], "the last failure decides the answer")
        XCTAssertEqual(sink.output.readableBytes, 0)
    }

    func testEveryTargetFailingForwardsTheLastProvidersOwnResponse() throws {
        coordinator.start(try context())
        coordinator.upstreamDidReceiveHead(head("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n"))
        XCTAssertTrue(body("a!"))
        coordinator.upstreamDidFinish()
        // b is the last candidate: its 429 is forwarded as it came, not held.
        coordinator.upstreamDidReceiveHead(head("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 9\r\nContent-Length: 2\r\n\r\n"))
        XCTAssertTrue(sink.text.hasPrefix("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 9\r\n"))
        XCTAssertTrue(body("b!"))
        coordinator.upstreamDidFinish()
        XCTAssertTrue(sink.text.hasSuffix("\r\n\r\nb!"))
        XCTAssertEqual(coordinator.outcome, "upstream_status")
    }

    func testNoRetryOnceTheHeadWentToTheClient() throws {
        coordinator.start(try context())
        coordinator.upstreamDidReceiveHead(head("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
        XCTAssertTrue(body("data: {\"a\":1}\n\n"))
        coordinator.upstreamDidFail(.reset("gone"), phase: .afterHead)
        XCTAssertEqual(starter.started.count, 1)
        XCTAssertTrue(sink.text.contains("event: error\ndata: {\"error\""))
        XCTAssertTrue(sink.text.hasSuffix("0\r\n\r\n"))
        XCTAssertEqual(sink.queued, true)
        XCTAssertEqual(coordinator.outcome, "stream_error_reset")
    }

    func testOpenBreakerIsSkippedWithoutAnAttempt() throws {
        coordinator.start(try context())
        coordinator.upstreamDidFail(.connectFailed("refused"), phase: .beforeRequestWritten)   // opens a (threshold 1)
        coordinator.upstreamDidReceiveHead(head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        XCTAssertEqual(starter.started.map(\.provider), ["a", "b"])
        starter.started.removeAll()
        coordinator.start(try context())
        XCTAssertEqual(starter.started.map(\.provider), ["b"], "the open target was not skipped")
        clock += 10_000_000_000
        starter.started.removeAll()
        coordinator.start(try context())
        XCTAssertEqual(starter.started.map(\.provider), ["a"], "no half-open probe after the cool-down")
    }

    func testEveryBreakerOpenIs503() throws {
        for t in 0..<config.models.targets.count { breakers.recordFailure(t, now: clock) }
        coordinator.start(try context())
        XCTAssertTrue(starter.started.isEmpty)
        XCTAssertEqual(sink.local.map(\.status), [503])
    }

    func testSynchronousFailureInsideStartIsHandled() throws {
        starter.failAtOnce["a"] = .connectFailed("cannot resolve")
        coordinator.start(try context())
        XCTAssertEqual(starter.started.map(\.provider), ["a", "b"])
        // The live attempt is b's: a client abort cancels it, not a's.
        coordinator.cancel()
        XCTAssertTrue(starter.started[1].attempt.cancelled)
    }

    func testMaxAttemptsBoundsTheChain() throws {
        let y = Self.yaml.replacingOccurrences(of: "max_attempts: 3", with: "max_attempts: 1")
        config = try ConfigurationLoader.parse(y, file: "t", environment: ["KEY_A": "sk-a"])
        breakers = CircuitBreakers(targets: config.models.targets.count, defaults: config.models.defaults)
        coordinator = ProxyCoordinator(sink: sink, starter: starter, breakers: breakers, metrics: nil, now: { [unowned self] in self.clock })
        coordinator.start(try context())
        // With one attempt allowed a retryable status is not held: it goes to the client.
        coordinator.upstreamDidReceiveHead(head("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"))
        XCTAssertEqual(starter.started.count, 1)
        XCTAssertTrue(sink.text.hasPrefix("HTTP/1.1 503"))
    }

    func testAliasIsFoundByItsBytesOrThroughEscapes() throws {
        // The router matches a plain string on its bytes; an escaped spelling of the same name
        // is decoded and found too; a name that is no alias is a 404.
        let plain = try context(body: "{\"model\":\"alias\"}")
        let escaped = try context(body: "{\"model\":\"ali\\u0061s\"}")
        XCTAssertEqual(plain.plan?.alias, "alias")
        XCTAssertEqual(escaped.plan?.alias, "alias")
        XCTAssertNil(config.models.alias(utf8: UnsafeRawBufferPointer(start: nil, count: 0)), "an empty name is no alias")
        let unknown = RequestContext(requestID: RequestID("r"), head: plain.head, body: Array("{\"model\":\"aliasx\"}".utf8),
                                     clientAddress: "127.0.0.1", startNanos: 0, configuration: config)
        unknown.tier = "t"
        var refused: LocalResponse?
        for m: Middleware in [RequestTargetMiddleware(), RouteMiddleware(), HeaderHygieneMiddleware(), AliasRouterMiddleware()] {
            if case .respond(let r) = m.process(unknown) { refused = r; break }
        }
        XCTAssertEqual(refused?.status, 404)
    }

    /// A one-target tier list's plan is the same object for every request a worker's router
    /// serves (nothing in it is one request's); each request's body is its own context's.
    func testOneTargetPlanIsSharedAndEachBodyIsTheRequests() throws {
        let router = AliasRouterMiddleware()
        var contexts: [RequestContext] = []
        for (i, text) in ["{\"model\":\"alias\",\"n\":1}", "{\"n\":22,\"model\":\"alias\"}"].enumerated() {
            let raw = Array("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: \(text.utf8.count)\r\n\r\n".utf8)
            guard case .complete(let head, _) = raw.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { throw XCTSkip("parse") }
            let ctx = RequestContext(requestID: RequestID("req-\(i)"), head: head, body: Array(text.utf8), clientAddress: "127.0.0.1",
                                     startNanos: 0, configuration: config)
            ctx.tier = "t"
            for m: Middleware in [RequestTargetMiddleware(), RouteMiddleware(), HeaderHygieneMiddleware(), router] {
                guard case .next = m.process(ctx) else { return XCTFail("\(m.name) refused") }
            }
            contexts.append(ctx)
        }
        let plans = contexts.compactMap(\.plan)
        XCTAssertEqual(plans.count, 2)
        XCTAssertTrue(plans[0] === plans[1])
        XCTAssertEqual(plans[0].candidates.map(\.model), ["model-a", "model-c", "model-b"])
        let target = plans[0].candidates[0]
        XCTAssertEqual(String(decoding: contexts[0].body(for: target), as: UTF8.self), "{\"model\":\"model-a\",\"n\":1}")
        XCTAssertEqual(String(decoding: contexts[1].body(for: target), as: UTF8.self), "{\"n\":22,\"model\":\"model-a\"}")
        for ctx in contexts {
            let n = try XCTUnwrap(ctx.inPlaceBodyCount(for: target))
            var out = [UInt8](repeating: 0, count: n)
            out.withUnsafeMutableBytes { ctx.writeBody(for: target, to: $0.baseAddress!) }
            XCTAssertEqual(out, ctx.body(for: target))
        }
    }

    func testPlainRouteMakesOneAttempt() throws {
        coordinator.start(try context(path: "/plain"))
        XCTAssertEqual(starter.started.map(\.provider), ["b"])
        XCTAssertTrue(starter.started[0].head.hasPrefix("POST /base/plain HTTP/1.1"))
        coordinator.upstreamDidFail(.connectFailed("refused"), phase: .beforeRequestWritten)
        XCTAssertEqual(starter.started.count, 1)
        XCTAssertEqual(sink.local.map(\.status), [502])
    }

    /// Once the connection is done with a request, the coordinator lets go of its context (so
    /// an idle connection holds no body, and the parser may refill the head); not before the
    /// response is finished. The last attempt's provider stays for the log.
    func testRequestEndedDropsTheContextOnlyWhenFinished() throws {
        weak var weakContext: RequestContext?
        do {
            let ctx = try context(path: "/plain")
            weakContext = ctx
            coordinator.start(ctx)
        }
        coordinator.upstreamDidReceiveHead(head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"))
        coordinator.requestEnded()
        XCTAssertNotNil(weakContext, "the response is still being relayed")
        XCTAssertTrue(body("ok"))
        coordinator.upstreamDidFinish()
        coordinator.requestEnded()
        XCTAssertNil(weakContext)
        XCTAssertEqual(coordinator.provider?.name, "b")
    }

    func testSlowClientPausesAndResumesTheUpstream() throws {
        coordinator.start(try context(path: "/plain"))
        coordinator.upstreamDidReceiveHead(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
        sink.slow = true
        XCTAssertFalse(body("x"), "the upstream must pause while the client is slow")
        coordinator.clientDrained()
        XCTAssertTrue(starter.started[0].attempt.resumed)
    }

    /// After each provider read of a response in progress, what was queued leaves at once (not
    /// at the end of the loop iteration): not before the head went out, not while the client
    /// holds the upstream paused, not once the response is finished.
    func testEachProviderReadIsWrittenAtOnce() throws {
        coordinator.start(try context(path: "/plain"))
        coordinator.upstreamReadEnded()
        XCTAssertEqual(sink.flushes, 0, "nothing relayed yet")
        coordinator.upstreamDidReceiveHead(head("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
        XCTAssertTrue(body("data: {}\n\n"))
        coordinator.upstreamReadEnded()
        XCTAssertEqual(sink.flushes, 1)
        sink.slow = true
        XCTAssertFalse(body("data: {}\n\n"))
        coordinator.upstreamReadEnded()
        XCTAssertEqual(sink.flushes, 1, "paused: the slow-client path writes")
        sink.slow = false
        coordinator.clientDrained()
        coordinator.upstreamDidFinish()
        coordinator.upstreamReadEnded()
        XCTAssertEqual(sink.flushes, 1, "finished: the response's end wrote it")
    }
}
