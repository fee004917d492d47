import PortcullisConfig
import Synchronization

/// The verification keys, shared by all workers. The daemon builds one ring per configuration
/// generation (a SIGHUP loads the keys with the rest of the configuration), so its rings never
/// change; `reload` rotates a ring in place for embedders and tests.
///
/// Threads: `reload` may run on any thread; workers call `snapshot(after:)` on their loops. The
/// generation is an atomic, so the request path takes the lock only in the request right after
/// a rotation.
public final class JWTKeyRing: Sendable {
    private let state: Mutex<(keys: KeySet, generation: Int)>
    private let generationValue = Atomic<Int>(1)

    public init(_ keys: KeySet) { state = Mutex((keys, 1)) }

    public var generation: Int { generationValue.load(ordering: .acquiring) }

    /// The key set when it is newer than `generation`, else nil.
    public func snapshot(after generation: Int) -> (KeySet, Int)? {
        guard generationValue.load(ordering: .acquiring) != generation else { return nil }
        return state.withLock { ($0.keys, $0.generation) }
    }

    /// Re-reads keys and `jwks_file` (key rotation). On failure the old keys stay in force.
    @discardableResult
    public func reload(_ config: JWTConfiguration, environment: [String: String]) -> Result<Int, KeyLoadError> {
        do {
            let keys = try KeySetLoader.load(config, environment: environment)
            let g = state.withLock { s -> Int in
                s.keys = keys
                s.generation += 1
                return s.generation
            }
            generationValue.store(g, ordering: .releasing)
            return .success(keys.count)
        } catch {
            return .failure(error)
        }
    }
}
