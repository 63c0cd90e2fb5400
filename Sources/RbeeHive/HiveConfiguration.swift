import Foundation
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

    public init(home: String) {
        self.home = home
    }

    /// `RBEE_HOME`, else `~/.rbee`.
    public static func defaultHome(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        environment["RBEE_HOME"] ?? NSHomeDirectory() + "/.rbee"
    }
}
