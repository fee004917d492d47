import PortcullisCore

enum PortcullisCoreWall {
    static func seconds() -> UInt64 { WallClock.nowMillis() / 1000 }
}
