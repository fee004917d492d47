import CHiredis

/// The hiredis library this binary links. The Redis-backed limiter (a later issue) lives in
/// this module and drives `redisAsyncContext` on the workers' event loops.
public enum HiredisInfo {
    public static var version: String { "\(pc_hiredis_major()).\(pc_hiredis_minor())" }
}
