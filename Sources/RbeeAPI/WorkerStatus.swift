/// Lifecycle of a worker as `/v1/ready` and `/health` report it.
public enum WorkerState: String, Sendable, Codable {
    case loading, ready, busy, draining, error
}

/// `GET /health` of a worker.
public struct WorkerHealth: Sendable, Equatable, Codable {
    public var status: String
    public var version: String
    public var apiVersion: Int
    public var workerID: String
    public var model: String
    public var state: WorkerState
    public var slotsTotal: Int
    public var slotsBusy: Int
    public var queueDepth: Int
    public var uptimeS: Double
    public var memoryBytes: Int
    public var pid: Int32
    /// The loaded model's chat template; nil before the model is loaded.
    public var chatTemplate: ChatTemplateInfo?
    /// Slot states kept in host RAM for prompt reuse (`--cache-ram-mib`).
    public var promptCache: PromptCacheInfo?

    public init(
        status: String = "ok", workerID: String, model: String, state: WorkerState, slotsTotal: Int, slotsBusy: Int,
        queueDepth: Int, uptimeS: Double, memoryBytes: Int, pid: Int32, chatTemplate: ChatTemplateInfo? = nil,
        promptCache: PromptCacheInfo? = nil
    ) {
        self.status = status
        self.version = RbeeVersion.version
        self.apiVersion = RbeeVersion.apiVersion
        self.workerID = workerID
        self.model = model
        self.state = state
        self.slotsTotal = slotsTotal
        self.slotsBusy = slotsBusy
        self.queueDepth = queueDepth
        self.uptimeS = uptimeS
        self.memoryBytes = memoryBytes
        self.pid = pid
        self.chatTemplate = chatTemplate
        self.promptCache = promptCache
    }

    enum CodingKeys: String, CodingKey {
        case status, version, model, state, pid
        case apiVersion = "api_version"
        case workerID = "worker_id"
        case slotsTotal = "slots_total"
        case slotsBusy = "slots_busy"
        case queueDepth = "queue_depth"
        case uptimeS = "uptime_s"
        case memoryBytes = "memory_bytes"
        case chatTemplate = "chat_template"
        case promptCache = "prompt_cache"
    }
}

/// A worker's host-RAM cache of slot states: what it holds and its bound.
public struct PromptCacheInfo: Sendable, Equatable, Codable {
    public var bytes: Int
    public var entries: Int
    public var limitBytes: Int

    public init(bytes: Int, entries: Int, limitBytes: Int) {
        self.bytes = bytes
        self.entries = entries
        self.limitBytes = limitBytes
    }

    enum CodingKeys: String, CodingKey {
        case bytes, entries
        case limitBytes = "limit_bytes"
    }
}

/// `GET /v1/ready` of a worker.
public struct WorkerReadiness: Sendable, Equatable, Codable {
    public var ready: Bool
    public var state: WorkerState
    public var progressURL: String?
    public var error: String?

    public init(ready: Bool, state: WorkerState, progressURL: String? = nil, error: String? = nil) {
        self.ready = ready
        self.state = state
        self.progressURL = progressURL
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case ready, state, error
        case progressURL = "progress_url"
    }
}

/// One event of `GET /v1/loading/progress`.
public enum LoadingProgress: Sendable, Equatable {
    case loading(layersLoaded: Int, layersTotal: Int, vramMB: Int, ramMB: Int)
    case ready
    case failed(RbeeError)

    public var isTerminal: Bool {
        if case .loading = self { return false }
        return true
    }
}

extension LoadingProgress: Codable {
    private enum Keys: String, CodingKey {
        case stage
        case layersLoaded = "layers_loaded"
        case layersTotal = "layers_total"
        case vramMB = "vram_mb"
        case ramMB = "ram_mb"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        switch try container.decode(String.self, forKey: .stage) {
        case "loading_to_vram":
            self = .loading(
                layersLoaded: try container.decode(Int.self, forKey: .layersLoaded),
                layersTotal: try container.decode(Int.self, forKey: .layersTotal),
                vramMB: try container.decodeIfPresent(Int.self, forKey: .vramMB) ?? 0,
                ramMB: try container.decodeIfPresent(Int.self, forKey: .ramMB) ?? 0)
        case "ready": self = .ready
        case "error":
            self = .failed(try RbeeError(from: decoder))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .stage, in: container, debugDescription: "unknown stage \(other)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        switch self {
        case .loading(let loaded, let total, let vram, let ram):
            try container.encode("loading_to_vram", forKey: .stage)
            try container.encode(loaded, forKey: .layersLoaded)
            try container.encode(total, forKey: .layersTotal)
            try container.encode(vram, forKey: .vramMB)
            try container.encode(ram, forKey: .ramMB)
        case .ready:
            try container.encode("ready", forKey: .stage)
        case .failed(let error):
            try container.encode("error", forKey: .stage)
            try error.encode(to: encoder)
        }
    }
}

/// Where a model's chat template comes from and what it supports (llama.cpp's detection).
public struct ChatTemplateInfo: Sendable, Equatable, Codable {
    public enum Source: String, Sendable, Codable {
        /// The template in the GGUF file's header.
        case gguf
        /// llama.cpp's built-in template for the architecture: the file has none.
        case builtin
        /// A template file given for the model (`--chat-template-file`).
        case file
    }

    public var source: Source
    /// The built-in template's name (`gemma`, `chatml`, …), for `builtin`.
    public var name: String?
    public var supportsTools: Bool
    public var supportsThinking: Bool

    public init(source: Source, name: String? = nil, supportsTools: Bool = false, supportsThinking: Bool = false) {
        self.source = source
        self.name = name
        self.supportsTools = supportsTools
        self.supportsThinking = supportsThinking
    }

    enum CodingKeys: String, CodingKey {
        case source, name
        case supportsTools = "supports_tools"
        case supportsThinking = "supports_thinking"
    }
}

/// `POST /apply-template`: what the model would see for a chat request.
public struct AppliedTemplate: Sendable, Equatable, Codable {
    public var prompt: String
    public init(prompt: String) { self.prompt = prompt }
}
