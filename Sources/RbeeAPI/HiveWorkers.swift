/// `POST /v1/workers/spawn` body.
public struct WorkerSpawnRequest: Sendable, Equatable, Codable {
    public var modelRef: String
    public var device: String?
    public var parallel: Int?
    public var ctxSize: Int?
    /// Hand out a ready (or loading) worker of the same model (and template file) instead of
    /// starting another.
    public var reuse: Bool?
    /// A Jinja chat template file on the hive's machine that replaces the model's own
    /// (the worker's `--chat-template-file`).
    public var chatTemplateFile: String?

    public init(
        modelRef: String, device: String? = nil, parallel: Int? = nil, ctxSize: Int? = nil, reuse: Bool? = nil, chatTemplateFile: String? = nil
    ) {
        self.modelRef = modelRef
        self.device = device
        self.parallel = parallel
        self.ctxSize = ctxSize
        self.reuse = reuse
        self.chatTemplateFile = chatTemplateFile
    }

    enum CodingKeys: String, CodingKey {
        case device, parallel, reuse
        case modelRef = "model_ref"
        case ctxSize = "ctx_size"
        case chatTemplateFile = "chat_template_file"
    }
}

/// Lifecycle of a worker as its hive sees it.
public enum HiveWorkerState: String, Sendable, Codable {
    case starting, loading, ready, stopping, stopped, failed
}

/// A worker as `GET /v1/workers` and `POST /v1/workers/spawn` describe it.
public struct HiveWorkerInfo: Sendable, Equatable, Codable {
    public var workerID: String
    public var modelID: String
    public var url: String
    public var progressURL: String
    public var pid: Int32?
    public var state: HiveWorkerState
    public var slotsTotal: Int
    public var slotsBusy: Int
    public var queueDepth: Int
    public var lastHeartbeatSAgo: Double?
    public var restarts: Int
    /// How the process ended: "exit 1", "signal 9".
    public var exit: String?
    /// Why it failed or was stopped, typed as every wire carries errors.
    public var error: RbeeError?
    public var stderrTail: String?
    /// Where it runs: `cpu`, `cuda:N`.
    public var device: String?
    /// The loaded model's chat template (reported by the worker once loaded).
    public var chatTemplate: ChatTemplateInfo?

    public init(
        workerID: String, modelID: String, url: String, progressURL: String, pid: Int32?, state: HiveWorkerState, slotsTotal: Int,
        slotsBusy: Int, queueDepth: Int, lastHeartbeatSAgo: Double?, restarts: Int, exit: String?, error: RbeeError?, stderrTail: String?,
        device: String? = nil, chatTemplate: ChatTemplateInfo? = nil
    ) {
        self.workerID = workerID
        self.modelID = modelID
        self.url = url
        self.progressURL = progressURL
        self.pid = pid
        self.state = state
        self.slotsTotal = slotsTotal
        self.slotsBusy = slotsBusy
        self.queueDepth = queueDepth
        self.lastHeartbeatSAgo = lastHeartbeatSAgo
        self.restarts = restarts
        self.exit = exit
        self.error = error
        self.stderrTail = stderrTail
        self.device = device
        self.chatTemplate = chatTemplate
    }

    enum CodingKeys: String, CodingKey {
        case url, pid, state, restarts, exit, error
        case workerID = "worker_id"
        case modelID = "model_id"
        case chatTemplate = "chat_template"
        case progressURL = "progress_url"
        case slotsTotal = "slots_total"
        case slotsBusy = "slots_busy"
        case queueDepth = "queue_depth"
        case lastHeartbeatSAgo = "last_heartbeat_s_ago"
        case stderrTail = "stderr_tail"
        case device
    }
}
