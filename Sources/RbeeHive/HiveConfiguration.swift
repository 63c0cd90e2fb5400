import Foundation
import RbeeAPI
import RbeeHTTP

/// Everything a hive needs; `rbee-hive` fills it from flags and `RBEE_…` variables.
public struct HiveConfiguration: Sendable {
    /// `$RBEE_HOME`: the catalog lives in `hive/`, downloaded models in `models/`.
    public var home: String
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests).
    public var port = 7835
    public var token: APIToken?
    public var downloads = DownloadSettings()
    /// Further directories `file:` references may point into.
    public var extraModelDirectories: [String] = []
    public var keepAliveInterval: Duration = .seconds(10)
    public var supervision = SupervisionSettings()
    /// This hive's name (DNS-safe), reported to the queen.
    public var name = HiveConfiguration.defaultName()
    /// The queen to register with and send heartbeats to; nil runs standalone.
    public var queenURL: String?
    public var queenHeartbeatInterval: Duration = .seconds(10)

    public init(home: String) {
        self.home = home
    }

    /// The host name's first label, lower-cased, made DNS-safe.
    public static func defaultName() -> String {
        let first = ProcessInfo.processInfo.hostName.lowercased().split(separator: ".").first.map(String.init) ?? "hive"
        let safe = String(first.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "-" }.prefix(63))
        return Validation.isHiveName(safe) ? safe : "hive"
    }

    /// `RBEE_HOME`, else `~/.rbee`.
    public static func defaultHome(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        environment["RBEE_HOME"] ?? NSHomeDirectory() + "/.rbee"
    }
}
