import Foundation
import RbeeHTTP

/// Everything a queen needs; `queen-rbee` fills it from flags and `RBEE_…` variables.
public struct QueenConfiguration: Sendable {
    /// `$RBEE_HOME`: the hive registry lives in `queen/`.
    public var home: String
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests).
    public var port = 7833
    public var token: APIToken?
    /// Requests allowed to wait in the queen's queue; more get 429 `QUEUE_FULL`.
    public var maxQueue = 256
    /// Requests the queen stacks on one worker beyond its slots (the worker queues them).
    public var workerQueueDepth = 4
    /// Slots asked of workers the queen spawns (nil: the worker's default).
    public var workerParallel: Int?
    /// The interval hives send heartbeats at; silent for 3 of them means unreachable.
    public var hiveHeartbeatInterval: Duration = .seconds(10)
    public var keepAliveInterval: Duration = .seconds(10)
    /// Start a hive on this machine when a request arrives and no hive is registered.
    public var startLocalHive = true
    /// The `rbee-hive` binary for the local hive (default: next to this executable, `ProgramDirectory`).
    public var hiveBinary: String?
    /// Directories the local hive may import `file:` models from.
    public var localHiveModelDirectories: [String] = []
    /// Port of the local hive (0 picks a free one).
    public var localHivePort = 7835
    /// Origins browsers may call the queen from (CORS); none: same-origin only.
    public var corsOrigins: [String] = []
    /// The model of OpenAI requests that name none (else the only model known, if just one is).
    public var defaultModel: String?

    public init(home: String) {
        self.home = home
    }

    /// `RBEE_HOME`, else `~/.rbee`.
    public static func defaultHome(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        environment["RBEE_HOME"] ?? NSHomeDirectory() + "/.rbee"
    }

    /// An upstream (worker, hive) stream with no event and no keep-alive for this long is stalled
    /// (SPEC §5): 3 keep-alive intervals of the upstream, whose default is 10 s.
    public var stallTimeout: Duration = .seconds(30)
    /// On shutdown, in-flight tasks get this long to finish before they are ended.
    public var drainGrace: Duration = .seconds(30)
    var unreachableAfter: Duration { hiveHeartbeatInterval * 3 }
}
