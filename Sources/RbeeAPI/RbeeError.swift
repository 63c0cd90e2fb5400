/// An error every rbee program reports the same way: a stable code, a human message, and details
/// naming the values involved. It becomes the native error envelope on the wire.
public struct RbeeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    public var details: [String: JSONValue]
    /// Seconds for a `Retry-After` header, for 429 and 503 answers.
    public var retryAfter: Int?
    /// HTTP status when it differs from the code's usual one (413 for an oversized body).
    public var status: Int?

    public init(_ code: ErrorCode, _ message: String, details: [String: JSONValue] = [:], retryAfter: Int? = nil, status: Int? = nil) {
        self.code = code
        self.message = message
        self.details = details
        self.retryAfter = retryAfter
        self.status = status
    }

    /// The status this error answers with.
    public var httpStatus: Int { status ?? code.httpStatus }

    public var description: String { "\(code.rawValue): \(message)" }

    /// One field error of a validation failure.
    public struct FieldError: Sendable, Equatable, Codable {
        public var field: String
        public var message: String
        public init(field: String, message: String) {
            self.field = field
            self.message = message
        }
    }

    /// A 400 listing every field error found, not only the first.
    public static func invalid(_ errors: [FieldError]) -> RbeeError {
        let summary = errors.map { "\($0.field): \($0.message)" }.joined(separator: "; ")
        return RbeeError(
            .invalidRequest,
            "invalid request: \(summary)",
            details: ["errors": .array(errors.map { .object(["field": .string($0.field), "message": .string($0.message)]) })]
        )
    }
}

/// The native error body: `{"error":{"code","message","details","correlation_id"}}`.
public struct ErrorEnvelope: Codable, Sendable, Equatable {
    public struct Body: Codable, Sendable, Equatable {
        public var code: String
        public var message: String
        public var details: [String: JSONValue]
        public var correlationID: String?

        enum CodingKeys: String, CodingKey {
            case code, message, details
            case correlationID = "correlation_id"
        }
    }

    public var error: Body

    public init(_ error: RbeeError, correlationID: String?) {
        self.error = Body(code: error.code.rawValue, message: error.message, details: error.details, correlationID: correlationID)
    }
}
