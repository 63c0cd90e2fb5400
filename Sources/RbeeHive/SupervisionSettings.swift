import Foundation

/// Timers and limits of worker supervision (SPEC §5); tests shorten them.
public struct SupervisionSettings: Sendable {
    /// `llm-worker-rbee`; nil: the one installed next to the running executable (`ProgramDirectory`).
    public var workerBinary: String?
    /// Interval the hive asks workers to send heartbeats at; 3 missed ones stop the worker.
    public var heartbeatInterval: Duration = .seconds(15)
    public var healthProbeInterval: Duration = .seconds(10)
    public var loadingTimeout: Duration = .seconds(600)
    /// A ready worker that accepted no request for this long is stopped.
    public var idleTimeout: Duration = .seconds(300)
    /// SIGTERM first; SIGKILL after this.
    public var stopGrace: Duration = .seconds(10)
    /// The ports workers listen on, so a firewalled machine can open them in advance; nil: a
    /// port the system picks (ephemeral).
    public var workerPorts: ClosedRange<Int>? = 7900...7999
    /// The address workers bind (the hive's own).
    public var workerHost = "127.0.0.1"
    /// The address workers are announced with, when it is not the one they bind (a hive bound to
    /// every interface, or behind an advertised URL).
    public var workerAdvertisedHost: String?
    /// An ended worker stays listed this long (how it ended is visible), then is forgotten.
    public var endedRetention: Duration = .seconds(60)
    /// Each worker's log file is rotated past this size (one older file is kept).
    public var logLimitBytes = 8 << 20
    /// Memory a worker needs, as a multiple of its model file's size.
    public var memoryHeadroom = 1.2
    /// Memory this hive may count on at most, whatever the machine has free (a small machine, or
    /// a share of a larger one); nil: the machine's available memory.
    public var memoryLimitBytes: Int?

    public init(workerBinary: String? = nil) {
        self.workerBinary = workerBinary
    }

    var timers: WorkerLifecycle.Timers {
        WorkerLifecycle.Timers(
            heartbeatInterval: heartbeatInterval, healthProbeInterval: healthProbeInterval, loadingTimeout: loadingTimeout, idleTimeout: idleTimeout,
            endedRetention: endedRetention)
    }
}
