/// `POST /v1/workers/ready` from a worker to its hive: loaded (or failed).
public struct WorkerReadyReport: Sendable, Equatable, Codable {
    public var workerID: String
    public var url: String
    public var model: String
    public var state: WorkerState
    public var pid: Int32
    public var slotsTotal: Int
    public var error: String?

    public init(workerID: String, url: String, model: String, state: WorkerState, pid: Int32, slotsTotal: Int, error: String? = nil) {
        self.workerID = workerID
        self.url = url
        self.model = model
        self.state = state
        self.pid = pid
        self.slotsTotal = slotsTotal
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case url, model, state, pid, error
        case workerID = "worker_id"
        case slotsTotal = "slots_total"
    }
}

/// `POST /v1/workers/heartbeat` from a worker to its hive.
public struct WorkerHeartbeat: Sendable, Equatable, Codable {
    public var workerID: String
    public var state: WorkerState
    public var slotsTotal: Int
    public var slotsBusy: Int
    public var queueDepth: Int
    public var pid: Int32
    /// Requests accepted since the worker started; the hive's idle timer watches it change.
    public var jobsAccepted: Int?

    public init(workerID: String, state: WorkerState, slotsTotal: Int, slotsBusy: Int, queueDepth: Int, pid: Int32, jobsAccepted: Int? = nil) {
        self.workerID = workerID
        self.state = state
        self.slotsTotal = slotsTotal
        self.slotsBusy = slotsBusy
        self.queueDepth = queueDepth
        self.pid = pid
        self.jobsAccepted = jobsAccepted
    }

    enum CodingKeys: String, CodingKey {
        case state, pid
        case jobsAccepted = "jobs_accepted"
        case workerID = "worker_id"
        case slotsTotal = "slots_total"
        case slotsBusy = "slots_busy"
        case queueDepth = "queue_depth"
    }
}
