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
    /// The URL the queen reaches this hive at; nil: `http://<host>:<port>`, the loopback
    /// address standing in for a hive bound to every interface.
    public var advertiseURL: String?

    public init(home: String) {
        self.home = home
    }

    /// The address this hive and its workers are announced with: the advertised URL's host, else
    /// the address it binds (loopback for every interface).
    var advertisedHost: String {
        if let advertiseURL, let host = URL(string: advertiseURL)?.host, !host.isEmpty { return host }
        return Self.isWildcard(host) ? "127.0.0.1" : host
    }

    static func isWildcard(_ host: String) -> Bool { host == "0.0.0.0" || host == "::" }

    /// Where workers on this machine call the hive back: its own address, loopback for every interface.
    func callbackURL(port: Int) -> String { "http://\(Self.isWildcard(host) ? "127.0.0.1" : host):\(port)" }

    /// The URL announced to the queen.
    func announcedURL(port: Int) -> String { advertiseURL ?? "http://\(advertisedHost):\(port)" }

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
