import PortcullisConfig
import Synchronization

/// The current verification keys, shared by all workers and swapped whole on reload.
///
/// Threads: `reload` runs on the signal-handling thread; workers call `snapshot(after:)` on
/// their loops. The generation is an atomic, so the request path takes the lock only in the
/// request right after a reload.
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
