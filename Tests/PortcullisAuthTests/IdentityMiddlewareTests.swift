import XCTest
import PortcullisConfig
import PortcullisCore
import PortcullisHTTP
import PortcullisPipeline
@testable import PortcullisAuth

/// The authentication stage reads the bearer token from the request head's bytes, and the
/// tenant-context stage renders the verified identity's upstream lines (reusing the last
/// rendering only for the same identity bytes).
final class IdentityMiddlewareTests: XCTestCase {
    func head(_ headerLines: String) throws -> HTTPRequestHead {
        let bytes = Array("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\(headerLines)\r\n".utf8)
        guard case .complete(let head, _) = bytes.withUnsafeBytes({ HTTPRequestParser().parse($0) }) else { throw XCTSkip("parse failed") }
        return head
    }

    func token(_ authorization: String) throws -> String? {
        let h = try head("Authorization: \(authorization)\r\n")
        guard let f = h.fields.first(where: { $0.known == .authorization }) else { return nil }
        return h.raw.withUnsafeBytes { raw in
            AuthenticationMiddleware.bearerToken(raw, f).map { String(decoding: UnsafeRawBufferPointer(rebasing: raw[$0]), as: UTF8.self) }
        }
    }

    func testBearerTokenIsReadFromTheHeadBytes() throws {
        XCTAssertEqual(try token("Bearer abc.def.ghi"), "abc.def.ghi")
        XCTAssertEqual(try token("bEaReR   abc"), "abc", "scheme case-insensitive, spaces after it skipped")
        XCTAssertNil(try token("Bearer"))
        XCTAssertNil(try token("Bearer    "))
        XCTAssertNil(try token("Basic dXNlcjpwdw=="))
        XCTAssertNil(try token("Bearerabc.def"))
    }

    func context(tenant: String?, user: String?, tier: String?) throws -> RequestContext {
        let config = try ConfigurationLoader.parse("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /v1/*, provider: p } ]\n",
                                                   file: "t.yaml")
        let ctx = RequestContext(requestID: RequestID("r"), head: try head(""), body: [], clientAddress: "10.0.0.1", startNanos: 0, configuration: config)
        ctx.tenant = tenant; ctx.user = user; ctx.tier = tier
        return ctx
    }

    func lines(_ m: TenantContextMiddleware, _ tenant: String?, _ user: String?, _ tier: String?) throws -> String {
        let ctx = try context(tenant: tenant, user: user, tier: tier)
        guard case .next = m.process(ctx) else { return "refused" }
        return String(decoding: ctx.upstreamIdentityLines, as: UTF8.self)
    }

    /// One stage instance serves a worker's requests in turn: each gets its own identity's lines,
    /// whatever came before (a reused rendering never carries another caller's identity).
    func testIdentityLinesFollowEachRequestsIdentity() throws {
        let m = TenantContextMiddleware(required: true)
        let acme = "x-tenant-id: acme\r\nx-user-id: u1\r\nx-tenant-tier: pro\r\n"
        XCTAssertEqual(try lines(m, "acme", "u1", "pro"), acme)
        XCTAssertEqual(try lines(m, "acme", "u1", "pro"), acme)
        XCTAssertEqual(try lines(m, "acme", "u2", "pro"), "x-tenant-id: acme\r\nx-user-id: u2\r\nx-tenant-tier: pro\r\n")
        XCTAssertEqual(try lines(m, "acme", "u2", nil), "x-tenant-id: acme\r\nx-user-id: u2\r\n")
        XCTAssertEqual(try lines(m, "acme", nil, nil), "x-tenant-id: acme\r\n")
        XCTAssertEqual(try lines(m, "acmf", nil, nil), "x-tenant-id: acmf\r\n")
        XCTAssertEqual(try lines(m, "a-much-longer-tenant-name-than-fits-inline", "u1", "pro"),
                       "x-tenant-id: a-much-longer-tenant-name-than-fits-inline\r\nx-user-id: u1\r\nx-tenant-tier: pro\r\n")
        XCTAssertEqual(try lines(m, "a-much-longer-tenant-name-than-fits-inlinf", "u1", "pro"),
                       "x-tenant-id: a-much-longer-tenant-name-than-fits-inlinf\r\nx-user-id: u1\r\nx-tenant-tier: pro\r\n")
        XCTAssertEqual(try lines(m, "acme", "u1", "pro"), acme)
        XCTAssertEqual(try lines(m, nil, nil, nil), "refused", "no tenant, no query")
        XCTAssertEqual(try lines(TenantContextMiddleware(required: false), nil, nil, nil), "", "demo mode: no identity lines")
    }

    /// A verified caller's object (`RequestContext.caller`) stands for its identity only while
    /// the context's values are its values: the same object reuses the rendering, another object
    /// or a changed value is rendered from the values.
    func testCallerObjectStandsForItsIdentityOnly() throws {
        let m = TenantContextMiddleware(required: true)
        let acme = VerifiedIdentity(tenant: "acme", user: "u1", tier: "pro", expiresAt: 0)
        let globex = VerifiedIdentity(tenant: "globex", user: nil, tier: nil, expiresAt: 0)
        func lines(_ id: VerifiedIdentity, change: ((RequestContext) -> Void)? = nil) throws -> String {
            let ctx = try context(tenant: nil, user: nil, tier: nil)
            ctx.setCaller(id, tenant: id.tenant ?? "", user: id.user, tier: id.tier)
            XCTAssertTrue(ctx.caller === id)
            if let change { change(ctx); XCTAssertNil(ctx.caller, "a changed value drops the caller object") }
            guard case .next = m.process(ctx) else { return "refused" }
            return String(decoding: ctx.upstreamIdentityLines, as: UTF8.self)
        }
        let acmeLines = "x-tenant-id: acme\r\nx-user-id: u1\r\nx-tenant-tier: pro\r\n"
        XCTAssertEqual(try lines(acme), acmeLines)
        XCTAssertEqual(try lines(acme), acmeLines)
        XCTAssertEqual(try lines(acme) { $0.tier = "free" }, "x-tenant-id: acme\r\nx-user-id: u1\r\nx-tenant-tier: free\r\n")
        XCTAssertEqual(try lines(acme), acmeLines)
        XCTAssertEqual(try lines(acme) { $0.user = nil }, "x-tenant-id: acme\r\nx-tenant-tier: pro\r\n")
        XCTAssertEqual(try lines(globex), "x-tenant-id: globex\r\n")
        XCTAssertEqual(try lines(acme) { $0.tenant = "initech" }, "x-tenant-id: initech\r\nx-user-id: u1\r\nx-tenant-tier: pro\r\n")
        XCTAssertEqual(try lines(acme), acmeLines)
    }
}
