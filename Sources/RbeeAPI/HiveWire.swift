/// `POST /v1/models/download` body.
public struct DownloadRequest: Sendable, Equatable, Codable {
    public var modelRef: String
    public var sha256: String?

    public init(modelRef: String, sha256: String? = nil) {
        self.modelRef = modelRef
        self.sha256 = sha256
    }

    enum CodingKeys: String, CodingKey {
        case modelRef = "model_ref"
        case sha256
    }
}

/// `POST /v1/models/download` answer: a download to follow, or the model already cached.
public struct DownloadStarted: Sendable, Equatable, Codable {
    public enum Status: String, Sendable, Codable { case downloading, cached }
    public var downloadID: String?
    public var modelID: String
    public var status: Status
    public var localPath: String?

    public init(downloadID: String?, modelID: String, status: Status, localPath: String? = nil) {
        self.downloadID = downloadID
        self.modelID = modelID
        self.status = status
        self.localPath = localPath
    }

    enum CodingKeys: String, CodingKey {
        case status
        case downloadID = "download_id"
        case modelID = "model_id"
        case localPath = "local_path"
    }
}

/// One event of `GET /v1/models/download/progress?id=`.
public enum DownloadProgress: Sendable, Equatable {
    /// `attempt` counts transfers (1 first; a resumed or fresh retry is the next one).
    case downloading(bytesDownloaded: Int, bytesTotal: Int?, speedMBps: Double, etaS: Double?, attempt: Int = 1)
    case complete(localPath: String, sha256: String, sizeBytes: Int)
    case failed(RbeeError)

    public var isTerminal: Bool {
        if case .downloading = self { return false }
        return true
    }
}

extension DownloadProgress: Codable {
    private enum Keys: String, CodingKey {
        case stage, sha256, attempt
        case bytesDownloaded = "bytes_downloaded"
        case bytesTotal = "bytes_total"
        case speedMBps = "speed_mbps"
        case etaS = "eta_s"
        case localPath = "local_path"
        case sizeBytes = "size_bytes"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        switch try container.decode(String.self, forKey: .stage) {
        case "downloading":
            self = .downloading(
                bytesDownloaded: try container.decode(Int.self, forKey: .bytesDownloaded),
                bytesTotal: try container.decodeIfPresent(Int.self, forKey: .bytesTotal),
                speedMBps: try container.decodeIfPresent(Double.self, forKey: .speedMBps) ?? 0,
                etaS: try container.decodeIfPresent(Double.self, forKey: .etaS),
                attempt: try container.decodeIfPresent(Int.self, forKey: .attempt) ?? 1)
        case "complete":
            self = .complete(
                localPath: try container.decode(String.self, forKey: .localPath), sha256: try container.decode(String.self, forKey: .sha256),
                sizeBytes: try container.decode(Int.self, forKey: .sizeBytes))
        case "error":
            self = .failed(try RbeeError(from: decoder))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .stage, in: container, debugDescription: "unknown stage \(other)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        switch self {
        case .downloading(let bytes, let total, let speed, let eta, let attempt):
            // bytes_total and eta_s are in every frame, null while unknown.
            try container.encode("downloading", forKey: .stage)
            try container.encode(bytes, forKey: .bytesDownloaded)
            try container.encode(total, forKey: .bytesTotal)
            try container.encode((speed * 100).rounded() / 100, forKey: .speedMBps)
            try container.encode(eta.map { ($0 * 10).rounded() / 10 }, forKey: .etaS)
            try container.encode(attempt, forKey: .attempt)
        case .complete(let path, let sha256, let size):
            try container.encode("complete", forKey: .stage)
            try container.encode(path, forKey: .localPath)
            try container.encode(sha256, forKey: .sha256)
            try container.encode(size, forKey: .sizeBytes)
        case .failed(let error):
            try container.encode("error", forKey: .stage)
            try error.encode(to: encoder)
        }
    }
}

/// A model in a hive's catalog.
public struct ModelInfo: Sendable, Equatable, Codable {
    public var id: String
    public var sourceRef: String
    public var localPath: String
    public var sizeBytes: Int
    /// "" while a model imported from a local file is still being hashed.
    public var sha256: String
    public var architecture: String?
    public var layerCount: Int?
    public var contextLength: Int?
    public var quantization: String?
    public var parameterCount: Int?
    public var createdAt: Double
    /// The sha256 of the chat template set for this model on the hive (`PUT /v1/models/{id}/template`),
    /// which every later worker of it uses instead of the GGUF's; nil when none is set.
    public var chatTemplateSHA256: String?

    public init(
        id: String, sourceRef: String, localPath: String, sizeBytes: Int, sha256: String, architecture: String?, layerCount: Int?,
        contextLength: Int?, quantization: String?, parameterCount: Int?, createdAt: Double, chatTemplateSHA256: String? = nil
    ) {
        self.id = id
        self.sourceRef = sourceRef
        self.localPath = localPath
        self.sizeBytes = sizeBytes
        self.sha256 = sha256
        self.architecture = architecture
        self.layerCount = layerCount
        self.contextLength = contextLength
        self.quantization = quantization
        self.parameterCount = parameterCount
        self.createdAt = createdAt
        self.chatTemplateSHA256 = chatTemplateSHA256
    }

    enum CodingKeys: String, CodingKey {
        case id, sha256, architecture, quantization
        case sourceRef = "source_ref"
        case localPath = "local_path"
        case sizeBytes = "size_bytes"
        case layerCount = "layer_count"
        case contextLength = "context_length"
        case parameterCount = "parameter_count"
        case createdAt = "created_at"
        case chatTemplateSHA256 = "chat_template_sha256"
    }
}

/// `PUT /v1/models/{id}/template` on a hive (and the queen): the chat template text every later
/// worker of the model uses instead of the GGUF's.
public struct ChatTemplateUpdate: Sendable, Equatable, Codable {
    public static let maxBytes = 1 << 20
    public var template: String
    public init(template: String) { self.template = template }

    /// The template, or a 400 naming `template` when it is empty or over `maxBytes`.
    public func validated() throws(RbeeError) -> String {
        guard !template.isEmpty, template.utf8.count <= Self.maxBytes else {
            throw RbeeError.invalid([.init(field: "template", message: "must be 1 byte to 1 MiB of template text")])
        }
        return template
    }
}
