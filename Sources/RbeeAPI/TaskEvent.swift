/// One event of the queen's native task stream (`POST /v2/tasks`):
/// `queued` → `downloading`* → `loading`* → `started` → (`token` | `reasoning` | `tool_call`)* →
/// `end` | `error`, then `[DONE]`.
/// A warm model skips `downloading` and `loading`.
public enum TaskEvent: Sendable, Equatable {
    /// Place in the queen's queue, 1 being next (0: it goes straight to a worker).
    case queued(position: Int)
    /// `attempt` counts the hive's transfers of the file (a retry after a dropped connection or a
    /// failed checksum is the next one).
    case downloading(hive: String, model: String, bytesDownloaded: Int, bytesTotal: Int?, speedMBps: Double, etaS: Double?, attempt: Int = 1)
    case loading(hive: String, workerID: String, layersLoaded: Int, layersTotal: Int)
    case started(taskID: String, model: String, hive: String, workerID: String, queueMs: Double)
    case token(text: String, index: Int)
    /// A piece of the model's reasoning, apart from the answer.
    case reasoning(text: String, index: Int)
    /// A piece of a tool call.
    case toolCall(ToolCallDelta)
    case end(GenerationStats)
    case error(RbeeError)

    public var isTerminal: Bool {
        switch self {
        case .end, .error: true
        default: false
        }
    }
}

extension TaskEvent: Codable {
    private enum Keys: String, CodingKey {
        case type, position, hive, model, t, i, attempt
        case bytesDownloaded = "bytes_downloaded"
        case bytesTotal = "bytes_total"
        case speedMBps = "speed_mbps"
        case etaS = "eta_s"
        case workerID = "worker_id"
        case layersLoaded = "layers_loaded"
        case layersTotal = "layers_total"
        case taskID = "task_id"
        case queueMs = "queue_ms"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        switch try c.decode(String.self, forKey: .type) {
        case "queued": self = .queued(position: try c.decode(Int.self, forKey: .position))
        case "downloading":
            self = .downloading(
                hive: try c.decode(String.self, forKey: .hive), model: try c.decode(String.self, forKey: .model),
                bytesDownloaded: try c.decode(Int.self, forKey: .bytesDownloaded), bytesTotal: try c.decodeIfPresent(Int.self, forKey: .bytesTotal),
                speedMBps: try c.decodeIfPresent(Double.self, forKey: .speedMBps) ?? 0, etaS: try c.decodeIfPresent(Double.self, forKey: .etaS),
                attempt: try c.decodeIfPresent(Int.self, forKey: .attempt) ?? 1)
        case "loading":
            self = .loading(
                hive: try c.decode(String.self, forKey: .hive), workerID: try c.decode(String.self, forKey: .workerID),
                layersLoaded: try c.decode(Int.self, forKey: .layersLoaded), layersTotal: try c.decode(Int.self, forKey: .layersTotal))
        case "started":
            self = .started(
                taskID: try c.decode(String.self, forKey: .taskID), model: try c.decode(String.self, forKey: .model),
                hive: try c.decode(String.self, forKey: .hive), workerID: try c.decode(String.self, forKey: .workerID),
                queueMs: try c.decode(Double.self, forKey: .queueMs))
        case "token": self = .token(text: try c.decode(String.self, forKey: .t), index: try c.decode(Int.self, forKey: .i))
        case "reasoning": self = .reasoning(text: try c.decode(String.self, forKey: .t), index: try c.decode(Int.self, forKey: .i))
        case "tool_call": self = .toolCall(try ToolCallDelta(from: decoder))
        case "end": self = .end(try GenerationStats(from: decoder))
        case "error": self = .error(try RbeeError(from: decoder))
        case let other: throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "unknown event type \(other)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        switch self {
        case .queued(let position):
            try c.encode("queued", forKey: .type)
            try c.encode(position, forKey: .position)
        case .downloading(let hive, let model, let bytes, let total, let speed, let eta, let attempt):
            try c.encode("downloading", forKey: .type)
            try c.encode(hive, forKey: .hive)
            try c.encode(model, forKey: .model)
            try c.encode(bytes, forKey: .bytesDownloaded)
            try c.encode(total, forKey: .bytesTotal)
            try c.encode((speed * 100).rounded() / 100, forKey: .speedMBps)
            try c.encode(eta.map { ($0 * 10).rounded() / 10 }, forKey: .etaS)
            try c.encode(attempt, forKey: .attempt)
        case .loading(let hive, let workerID, let loaded, let total):
            try c.encode("loading", forKey: .type)
            try c.encode(hive, forKey: .hive)
            try c.encode(workerID, forKey: .workerID)
            try c.encode(loaded, forKey: .layersLoaded)
            try c.encode(total, forKey: .layersTotal)
        case .started(let taskID, let model, let hive, let workerID, let queueMs):
            try c.encode("started", forKey: .type)
            try c.encode(taskID, forKey: .taskID)
            try c.encode(model, forKey: .model)
            try c.encode(hive, forKey: .hive)
            try c.encode(workerID, forKey: .workerID)
            try c.encode((queueMs * 10).rounded() / 10, forKey: .queueMs)
        case .token(let text, let index):
            try c.encode("token", forKey: .type)
            try c.encode(text, forKey: .t)
            try c.encode(index, forKey: .i)
        case .reasoning(let text, let index):
            try c.encode("reasoning", forKey: .type)
            try c.encode(text, forKey: .t)
            try c.encode(index, forKey: .i)
        case .toolCall(let delta):
            try c.encode("tool_call", forKey: .type)
            try delta.encode(to: encoder)
        case .end(let stats):
            try c.encode("end", forKey: .type)
            try stats.encode(to: encoder)
        case .error(let error):
            try c.encode("error", forKey: .type)
            try error.encode(to: encoder)
        }
    }
}
