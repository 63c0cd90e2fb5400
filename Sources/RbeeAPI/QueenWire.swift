/// Whether the queen can send work to a hive.
public enum HiveStatus: String, Sendable, Codable {
    /// Answered (heartbeat or probe) within the last 3 heartbeat intervals.
    case online
    /// Silent for 3 heartbeat intervals: gets no new work until it is heard from again.
    case unreachable
}

/// A hive as `GET /v1/hives` describes it.
public struct HiveRecord: Sendable, Equatable, Codable {
    public var name: String
    public var url: String
    public var status: HiveStatus
    /// Seconds since the epoch of the last heartbeat or successful probe.
    public var lastSeen: Double?
    public var cpuCores: Int?
    public var ramAvailableBytes: Int?
    public var models: [String]
    public var workers: Int
    /// How it joined: `api` (`POST /v1/hives`), `heartbeat` (registered itself), `local` (started by the queen).
    public var source: String
    /// What it last said of itself.
    public var version: String?
    public var apiVersion: Int?
    /// The identity the hive sent (nil for a hive of an earlier version).
    public var hiveID: String?
    /// The version of the catalog the queen holds for it.
    public var catalogVersion: Int?

    public init(
        name: String, url: String, status: HiveStatus, lastSeen: Double?, cpuCores: Int?, ramAvailableBytes: Int?, models: [String],
        workers: Int, source: String
    ) {
        self.name = name
        self.url = url
        self.status = status
        self.lastSeen = lastSeen
        self.cpuCores = cpuCores
        self.ramAvailableBytes = ramAvailableBytes
        self.models = models
        self.workers = workers
        self.source = source
    }

    enum CodingKeys: String, CodingKey {
        case name, url, status, models, workers, source, version
        case apiVersion = "api_version"
        case lastSeen = "last_seen"
        case cpuCores = "cpu_cores"
        case ramAvailableBytes = "ram_available_bytes"
        case hiveID = "hive_id"
        case catalogVersion = "catalog_version"
    }
}

/// `POST /v1/hives` body.
public struct AddHiveRequest: Sendable, Equatable, Codable {
    public var name: String
    public var url: String

    public init(name: String, url: String) {
        self.name = name
        self.url = url
    }
}

/// A worker anywhere in the cluster, as `GET /v1/workers` on the queen describes it.
public struct ClusterWorker: Sendable, Equatable, Codable {
    public var workerID: String
    public var hive: String
    public var model: String
    public var url: String
    public var state: HiveWorkerState
    public var pid: Int32?
    public var slotsTotal: Int
    public var slotsBusy: Int
    public var queueDepth: Int
    /// Requests the queen has on this worker now.
    public var queenInFlight: Int
    /// Decode rate of the last requests (exponential average), when any finished.
    public var tokensPerSec: Double?
    /// Where it runs: `cpu`, `cuda:N`.
    public var device: String?
    /// The loaded model's chat template: where it came from, what it supports.
    public var chatTemplate: ChatTemplateInfo?

    public init(
        workerID: String, hive: String, model: String, url: String, state: HiveWorkerState, pid: Int32?, slotsTotal: Int, slotsBusy: Int,
        queueDepth: Int, queenInFlight: Int, tokensPerSec: Double?, device: String? = nil, chatTemplate: ChatTemplateInfo? = nil
    ) {
        self.workerID = workerID
        self.hive = hive
        self.model = model
        self.url = url
        self.state = state
        self.pid = pid
        self.slotsTotal = slotsTotal
        self.slotsBusy = slotsBusy
        self.queueDepth = queueDepth
        self.queenInFlight = queenInFlight
        self.tokensPerSec = tokensPerSec
        self.device = device
        self.chatTemplate = chatTemplate
    }

    enum CodingKeys: String, CodingKey {
        case hive, model, url, state, pid
        case workerID = "worker_id"
        case slotsTotal = "slots_total"
        case slotsBusy = "slots_busy"
        case queueDepth = "queue_depth"
        case queenInFlight = "queen_in_flight"
        case tokensPerSec = "tokens_per_sec"
        case chatTemplate = "chat_template"
        case device
    }
}

/// A model anywhere in the cluster (`GET /v1/models` on the queen, native fields).
public struct ClusterModel: Sendable, Equatable, Codable {
    public var id: String
    public var sizeBytes: Int?
    public var quantization: String?
    public var hives: [String]
    /// Whether some worker has it loaded (or is loading it).
    public var loaded: Bool

    public init(id: String, sizeBytes: Int?, quantization: String?, hives: [String], loaded: Bool) {
        self.id = id
        self.sizeBytes = sizeBytes
        self.quantization = quantization
        self.hives = hives
        self.loaded = loaded
    }

    enum CodingKeys: String, CodingKey {
        case id, quantization, hives, loaded
        case sizeBytes = "size_bytes"
    }
}

/// `POST /v1/models/pull` body.
public struct PullRequest: Sendable, Equatable, Codable {
    public var model: String
    public var hive: String?

    public init(model: String, hive: String? = nil) {
        self.model = model
        self.hive = hive
    }
}

/// One event of `POST /v1/models/pull`: the hive's download progress, labelled with the hive.
public struct PullEvent: Sendable, Equatable, Codable {
    public var hive: String
    public var model: String
    public var progress: DownloadProgress

    public init(hive: String, model: String, progress: DownloadProgress) {
        self.hive = hive
        self.model = model
        self.progress = progress
    }

    enum Keys: String, CodingKey { case hive, model }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        hive = try c.decode(String.self, forKey: .hive)
        model = try c.decode(String.self, forKey: .model)
        progress = try DownloadProgress(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(hive, forKey: .hive)
        try c.encode(model, forKey: .model)
        try progress.encode(to: encoder)
    }
}

extension PullEvent: StreamEvent {
    public static func encodingFailure(_ error: RbeeError) -> PullEvent { PullEvent(hive: "", model: "", progress: .failed(error)) }
}

/// `GET /health` of the queen.
public struct QueenHealth: Sendable, Equatable, Codable {
    public var status: String
    public var version: String
    public var apiVersion: Int
    public var uptimeS: Double
    public var hivesOnline: Int
    public var hivesTotal: Int
    public var workers: Int
    public var queued: Int
    public var pid: Int32

    public init(status: String, uptimeS: Double, hivesOnline: Int, hivesTotal: Int, workers: Int, queued: Int, pid: Int32) {
        self.status = status
        self.version = RbeeVersion.version
        self.apiVersion = RbeeVersion.apiVersion
        self.uptimeS = uptimeS
        self.hivesOnline = hivesOnline
        self.hivesTotal = hivesTotal
        self.workers = workers
        self.queued = queued
        self.pid = pid
    }

    enum CodingKeys: String, CodingKey {
        case status, version, workers, queued, pid
        case apiVersion = "api_version"
        case uptimeS = "uptime_s"
        case hivesOnline = "hives_online"
        case hivesTotal = "hives_total"
    }
}
