/// A stable error code (SPEC §5). The codes rbee knows are named; a code this version does not
/// know (from a newer peer) still decodes, keeps its spelling and answers 500.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, Codable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { rawValue }

    public static let invalidRequest: ErrorCode = "INVALID_REQUEST"
    public static let invalidModelRef: ErrorCode = "INVALID_MODEL_REF"
    public static let invalidDevice: ErrorCode = "INVALID_DEVICE"
    public static let missingAPIKey: ErrorCode = "MISSING_API_KEY"
    public static let invalidAPIKey: ErrorCode = "INVALID_API_KEY"
    public static let modelNotFound: ErrorCode = "MODEL_NOT_FOUND"
    public static let hiveNotFound: ErrorCode = "HIVE_NOT_FOUND"
    public static let hiveExists: ErrorCode = "HIVE_EXISTS"
    public static let hiveUnreachable: ErrorCode = "HIVE_UNREACHABLE"
    public static let workerNotFound: ErrorCode = "WORKER_NOT_FOUND"
    public static let allSlotsBusy: ErrorCode = "ALL_SLOTS_BUSY"
    public static let queueFull: ErrorCode = "QUEUE_FULL"
    public static let insufficientRAM: ErrorCode = "INSUFFICIENT_RAM"
    public static let insufficientVRAM: ErrorCode = "INSUFFICIENT_VRAM"
    public static let insufficientDisk: ErrorCode = "INSUFFICIENT_DISK"
    public static let downloadFailed: ErrorCode = "DOWNLOAD_FAILED"
    public static let downloadTimeout: ErrorCode = "DOWNLOAD_TIMEOUT"
    public static let checksumMismatch: ErrorCode = "CHECKSUM_MISMATCH"
    public static let loadingTimeout: ErrorCode = "LOADING_TIMEOUT"
    public static let contextLengthExceeded: ErrorCode = "CONTEXT_LENGTH_EXCEEDED"
    public static let workerCrashed: ErrorCode = "WORKER_CRASHED"
    public static let streamStalled: ErrorCode = "STREAM_STALLED"
    public static let deadlineExceeded: ErrorCode = "DEADLINE_EXCEEDED"
    public static let versionMismatch: ErrorCode = "VERSION_MISMATCH"
    public static let cancelled: ErrorCode = "CANCELLED"
    public static let internalError: ErrorCode = "INTERNAL"
    // Beyond SPEC §5, documented in the README.
    public static let notFound: ErrorCode = "NOT_FOUND"
    public static let unavailable: ErrorCode = "UNAVAILABLE"
    public static let modelLoadFailed: ErrorCode = "MODEL_LOAD_FAILED"
    /// A worker request whose `job_id` is already queued or running there.
    public static let jobExists: ErrorCode = "JOB_EXISTS"
    /// No port of the hive's `--worker-ports` range is free for a new worker.
    public static let noPort: ErrorCode = "NO_PORT"
    /// A request field rbee does not honour (OpenAI's `unsupported_parameter`): refused, never
    /// silently ignored.
    public static let unsupportedParameter: ErrorCode = "UNSUPPORTED_PARAMETER"

    private static let statuses: [ErrorCode: Int] = [
        .invalidRequest: 400, .invalidModelRef: 400, .invalidDevice: 400, .contextLengthExceeded: 400, .unsupportedParameter: 400,
        .missingAPIKey: 401, .invalidAPIKey: 401,
        .modelNotFound: 404, .hiveNotFound: 404, .workerNotFound: 404, .notFound: 404,
        .deadlineExceeded: 408,
        .hiveExists: 409, .versionMismatch: 409, .jobExists: 409,
        .queueFull: 429,
        .cancelled: 499,
        .internalError: 500,
        .downloadFailed: 502, .downloadTimeout: 502, .checksumMismatch: 502, .workerCrashed: 502, .streamStalled: 502,
        .allSlotsBusy: 503, .hiveUnreachable: 503, .unavailable: 503, .loadingTimeout: 503, .modelLoadFailed: 503,
        .insufficientRAM: 507, .insufficientVRAM: 507, .insufficientDisk: 507, .noPort: 507,
    ]

    /// Every code this version knows.
    public static var known: [ErrorCode] { statuses.keys.sorted { $0.rawValue < $1.rawValue } }

    /// The HTTP status this code answers with when it is reported before a stream starts.
    public var httpStatus: Int { Self.statuses[self] ?? 500 }
}
