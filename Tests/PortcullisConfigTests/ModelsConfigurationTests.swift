import XCTest
import PortcullisCore
@testable import PortcullisConfig

/// `models`, `tiers`, `routing` and the alias-route keys: good files resolve, bad ones name file:line:col.
final class ModelsConfigurationTests: XCTestCase {
    static let yaml = """
    providers:
      local: { base_url: "http://127.0.0.1:9000" }
      openai: { base_url: "https://api.openai.com" }
      anthropic: { base_url: "https://api.anthropic.com", kind: anthropic }
    models:
      chat-default:
        tiers:
          free: [{ target: local/gpt-4o-mini }]
          pro:  [{ target: openai/gpt-4o, weight: 90 }, { target: openai/gpt-4.1, weight: 10 }]
        fallback: [anthropic/claude-sonnet-4-5]
        default_tier: free
        max_attempts: 2
    tiers:
      free: { aliases: [chat-default], max_tokens_cap: 1024 }
    routing:
      retry_on: [429, 503]
      breaker: { failures: 3, cooldown: 10s }
    routes:
      - { path: /chat/pro, alias: chat-default, tier: pro }
      - { path: /v1/chat/completions }
      - { path: /v1/embeddings, provider: openai }
      - { path: /v1/*, provider: local, passthrough_models: true, max_tokens_policy: reject }
    """

    func load(_ y: String) throws -> GatewayConfiguration { try ConfigurationLoader.parse(y, file: "m.yaml") }

    func error(_ y: String) -> String {
        do { _ = try load(y); return "no error" } catch { return "\(error)" }
    }

    func testResolvesAliasesTiersAndRoutes() throws {
        let c = try load(Self.yaml)
        let a = try XCTUnwrap(c.models.aliases["chat-default"])
        XCTAssertEqual(a.tiers["pro"]?.map(\.id), ["openai/gpt-4o", "openai/gpt-4.1"])
        XCTAssertEqual(a.tiers["pro"]?.map(\.weight), [90, 10])
        XCTAssertEqual(a.fallback.map(\.id), ["anthropic/claude-sonnet-4-5"])
        XCTAssertEqual(a.maxAttempts, 2)
        XCTAssertEqual(a.retryOn, [429, 503])              // from routing defaults
        XCTAssertEqual(c.models.defaults.breakerFailures, 3)
        XCTAssertEqual(c.models.targets.map(\.id), ["local/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-4.1", "anthropic/claude-sonnet-4-5"])
        XCTAssertEqual(a.targets(forTier: "enterprise")?.tier, "free")
        XCTAssertEqual(c.models.tiers["free"]?.maxTokensCap, 1024)
        XCTAssertTrue(c.routes[0].alias === a)
        XCTAssertEqual(c.routes[0].tier, "pro")
        XCTAssertEqual(c.routes[0].upstreamPath, "/v1/chat/completions")
        XCTAssertTrue(c.routes[1].usesAliases && c.routes[1].provider == nil)
        XCTAssertFalse(c.routes[2].usesAliases)
        XCTAssertTrue(c.routes[3].usesAliases && c.routes[3].maxTokensPolicy == .reject)
        XCTAssertEqual(c.modelListRoute?.path, "/v1/models")
        XCTAssertEqual(c.models.aliases(visibleTo: "free").map(\.name), ["chat-default"])
    }

    func testErrorsNameTheLocation() {
        func replacing(_ a: String, _ b: String) -> String { Self.yaml.replacingOccurrences(of: a, with: b) }
        XCTAssertTrue(error(replacing("local/gpt-4o-mini", "nowhere/gpt")).hasPrefix("m.yaml:8:"), error(replacing("local/gpt-4o-mini", "nowhere/gpt")))
        XCTAssertTrue(error(replacing("local/gpt-4o-mini", "local")).contains("expected provider/model"))
        XCTAssertTrue(error(replacing("default_tier: free", "default_tier: gold")).contains("no tier 'gold'"))
        XCTAssertTrue(error(replacing("alias: chat-default, tier", "alias: nope, tier")).contains("unknown alias 'nope'"))
        XCTAssertTrue(error(replacing("retry_on: [429, 503]", "retry_on: [200]")).contains("400 to 599"))
        XCTAssertTrue(error(replacing("weight: 90 }, { target: openai/gpt-4.1, weight: 10", "weight: 0 }, { target: openai/gpt-4.1, weight: 0")).contains("weight above 0"))
        XCTAssertTrue(error(replacing("{ path: /v1/embeddings, provider: openai }", "{ path: /v1/embeddings, provider: openai, alias: chat-default }")).contains("either provider or alias"))
        XCTAssertTrue(error(replacing("{ path: /v1/chat/completions }", "{ path: /v1/chat/completions, passthrough_models: true }")).contains("needs provider"))
        XCTAssertTrue(error(replacing("aliases: [chat-default]", "aliases: [ghost]")).contains("unknown alias 'ghost'"))
        XCTAssertTrue(error(replacing("max_tokens_policy: reject", "max_tokens_policy: shout")).contains("clamp or reject"))
        XCTAssertTrue(error(replacing("gpt-4o-mini", "gpt\\\"x")).contains("model names"))
        // Without models, a route needs a provider.
        XCTAssertTrue(error("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /x } ]\n").contains("routes[0].provider: required key is missing"))
    }
}
