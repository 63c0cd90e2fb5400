import Foundation
import RbeeHTTP
import RbeeInference

/// Everything a worker needs to run; `llm-worker-rbee` fills it from flags and `RBEE_…` variables.
public struct WorkerConfiguration: Sendable {
    public var engine: EngineConfiguration
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests); the bound port is reported by `WorkerService.port`.
    public var port = 7900
    public var workerID: String
    /// The hive to report readiness and heartbeats to; nil runs standalone.
    public var hiveURL: String?
    /// The URL the hive should give out for this worker; defaults to http://host:port.
    public var advertisedURL: String?
    public var token: APIToken?
    public var keepAliveInterval: Duration = .seconds(10)
    public var heartbeatInterval: Duration = .seconds(15)
    /// Missed (refused or failed) heartbeats after which the worker drains and exits.
    public var heartbeatFailureLimit = 3
    /// Time in-flight work gets to finish on shutdown before it is cancelled.
    public var drainGrace: Duration = .seconds(30)
    /// Start loading the model as soon as the service runs; tests may start it themselves.
    public var loadOnStart = true

    public init(engine: EngineConfiguration, workerID: String? = nil) {
        self.engine = engine
        self.workerID = workerID ?? "worker-" + String(UUID().uuidString.lowercased().prefix(8))
    }
}
