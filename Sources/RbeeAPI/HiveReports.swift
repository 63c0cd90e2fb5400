/// `POST /v1/workers/ready` from a worker to its hive: loaded (or failed).
public struct WorkerReadyReport: Sendable, Equatable, Codable {
    public var workerID: String
    public var url: String
    public var model: String
    public var state: WorkerState
    public var pid: Int32
    public var slotsTotal: Int
    /// Why the load failed.
    public var error: RbeeError?
    /// The worker's API version; a hive refuses versions it does not speak (`VERSION_MISMATCH`).
    public var apiVersion: Int?
    /// The loaded model's chat template.
    public var chatTemplate: ChatTemplateInfo?

    public init(
        workerID: String, url: String, model: String, state: WorkerState, pid: Int32, slotsTotal: Int, error: RbeeError? = nil,
        apiVersion: Int? = RbeeVersion.apiVersion, chatTemplate: ChatTemplateInfo? = nil
    ) {
        self.workerID = workerID
        self.url = url
        self.model = model
        self.state = state
        self.pid = pid
        self.slotsTotal = slotsTotal
        self.error = error
        self.apiVersion = apiVersion
        self.chatTemplate = chatTemplate
    }

    enum CodingKeys: String, CodingKey {
        case url, model, state, pid, error
        case workerID = "worker_id"
        case slotsTotal = "slots_total"
        case apiVersion = "api_version"
        case chatTemplate = "chat_template"
    }
}

/// `POST /v1/workers/listening` from a worker to its hive, as soon as it listens: a worker binds a
/// port the system picks, so no two workers on a host ever collide, and says which.
public struct WorkerListening: Sendable, Equatable, Codable {
    public var workerID: String
    public var url: String
    public var pid: Int32
    public var apiVersion: Int

    public init(workerID: String, url: String, pid: Int32, apiVersion: Int = RbeeVersion.apiVersion) {
        self.workerID = workerID
        self.url = url
        self.pid = pid
        self.apiVersion = apiVersion
    }

    enum CodingKeys: String, CodingKey {
        case url, pid
        case workerID = "worker_id"
        case apiVersion = "api_version"
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

/// `POST /v1/hives/heartbeat` from a hive to its queen: who it is and what it holds.
public struct HiveHeartbeat: Sendable, Equatable, Codable {
    public var name: String
    public var url: String
    public var version: String
    public var apiVersion: Int
    public var cpuCores: Int
    public var ramAvailableBytes: Int
    public var models: [String]
    public var workers: [HiveWorkerInfo]
    /// The catalog in full (sizes, quantization), for the queen's model list.
    public var catalog: [ModelInfo]?
    /// The hive's identity, created once and kept in its home: one hive is one registry entry
    /// whatever name or URL it is known by.
    public var hiveID: String?
    /// Grows with every change of the catalog (across restarts too), so the queen never lets an
    /// older catalog replace a newer one it already holds.
    public var catalogVersion: Int?

    public init(
        name: String, url: String, cpuCores: Int, ramAvailableBytes: Int, models: [String], workers: [HiveWorkerInfo], catalog: [ModelInfo]? = nil,
        hiveID: String? = nil, catalogVersion: Int? = nil
    ) {
        self.hiveID = hiveID
        self.catalogVersion = catalogVersion
        self.name = name
        self.url = url
        self.version = RbeeVersion.version
        self.apiVersion = RbeeVersion.apiVersion
        self.cpuCores = cpuCores
        self.ramAvailableBytes = ramAvailableBytes
        self.models = models
        self.workers = workers
        self.catalog = catalog
    }

    enum CodingKeys: String, CodingKey {
        case name, url, version, models, workers, catalog
        case apiVersion = "api_version"
        case cpuCores = "cpu_cores"
        case ramAvailableBytes = "ram_available_bytes"
        case hiveID = "hive_id"
        case catalogVersion = "catalog_version"
    }
}
