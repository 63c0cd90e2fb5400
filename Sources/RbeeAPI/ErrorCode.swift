/// The stable error codes of SPEC §5, each with the HTTP status it answers with.
public enum ErrorCode: String, Sendable, Codable, CaseIterable {
    case invalidRequest = "INVALID_REQUEST"
    case invalidModelRef = "INVALID_MODEL_REF"
    case invalidDevice = "INVALID_DEVICE"
    case missingAPIKey = "MISSING_API_KEY"
    case invalidAPIKey = "INVALID_API_KEY"
    case modelNotFound = "MODEL_NOT_FOUND"
    case hiveNotFound = "HIVE_NOT_FOUND"
    case hiveExists = "HIVE_EXISTS"
    case hiveUnreachable = "HIVE_UNREACHABLE"
    case workerNotFound = "WORKER_NOT_FOUND"
    case allSlotsBusy = "ALL_SLOTS_BUSY"
    case queueFull = "QUEUE_FULL"
    case insufficientRAM = "INSUFFICIENT_RAM"
    case insufficientVRAM = "INSUFFICIENT_VRAM"
    case insufficientDisk = "INSUFFICIENT_DISK"
    case downloadFailed = "DOWNLOAD_FAILED"
    case downloadTimeout = "DOWNLOAD_TIMEOUT"
    case checksumMismatch = "CHECKSUM_MISMATCH"
    case loadingTimeout = "LOADING_TIMEOUT"
    case contextLengthExceeded = "CONTEXT_LENGTH_EXCEEDED"
    case workerCrashed = "WORKER_CRASHED"
    case streamStalled = "STREAM_STALLED"
    case deadlineExceeded = "DEADLINE_EXCEEDED"
    case versionMismatch = "VERSION_MISMATCH"
    case cancelled = "CANCELLED"
    case notFound = "NOT_FOUND"
    case unavailable = "UNAVAILABLE"
    case modelLoadFailed = "MODEL_LOAD_FAILED"
    case internalError = "INTERNAL"

    /// The HTTP status this code answers with when it is reported before a stream starts.
    public var httpStatus: Int {
        switch self {
        case .invalidRequest, .invalidModelRef, .invalidDevice, .contextLengthExceeded: 400
        case .missingAPIKey, .invalidAPIKey: 401
        case .modelNotFound, .hiveNotFound, .workerNotFound, .notFound: 404
        case .deadlineExceeded: 408
        case .hiveExists, .versionMismatch: 409
        case .queueFull: 429
        case .allSlotsBusy, .hiveUnreachable, .unavailable, .loadingTimeout, .modelLoadFailed: 503
        case .insufficientRAM, .insufficientVRAM, .insufficientDisk: 507
        case .downloadFailed, .downloadTimeout, .checksumMismatch, .workerCrashed, .streamStalled: 502
        case .cancelled: 499
        case .internalError: 500
        }
    }
}
