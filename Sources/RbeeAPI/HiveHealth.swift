/// `GET /health` of a hive.
public struct HiveHealth: Sendable, Equatable, Codable {
    public var status: String
    public var version: String
    public var apiVersion: Int
    public var uptimeS: Double
    public var models: Int
    /// The hive's identity (see `HiveHeartbeat.hiveID`).
    public var hiveID: String?

    public init(status: String, uptimeS: Double, models: Int, hiveID: String? = nil) {
        self.hiveID = hiveID
        self.status = status
        self.version = RbeeVersion.version
        self.apiVersion = RbeeVersion.apiVersion
        self.uptimeS = uptimeS
        self.models = models
    }

    enum CodingKeys: String, CodingKey {
        case status, version, models
        case apiVersion = "api_version"
        case uptimeS = "uptime_s"
        case hiveID = "hive_id"
    }
}
