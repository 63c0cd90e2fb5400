/// An error every rbee program reports the same way: a stable code, a human message, details
/// naming the values involved and, for a request that failed validation, every field error.
///
/// It is also the error body of every wire: the native envelope's `error`, the `error` event of
/// task and inference streams, the `error` stage of progress streams and a worker's recorded
/// failure all encode it as `{code, message, details}`, with field errors as `details.errors`.
/// So an error raised on one hop reaches the client typed, with its details, on every other.
public struct RbeeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    /// Values involved, other than field errors.
    public var details: [String: JSONValue]
    /// Every field error of a request that failed validation.
    public var fieldErrors: [FieldError]
    /// Seconds for a `Retry-After` header, for 429 and 503 answers.
    public var retryAfter: Int?
    /// HTTP status when it differs from the code's usual one (413 for an oversized body).
    public var status: Int?

    public init(
        _ code: ErrorCode, _ message: String, details: [String: JSONValue] = [:], fieldErrors: [FieldError] = [], retryAfter: Int? = nil,
        status: Int? = nil
    ) {
        self.code = code
        self.message = message
        self.details = details
        self.fieldErrors = fieldErrors
        self.retryAfter = retryAfter
        self.status = status
    }

    /// The status this error answers with.
    public var httpStatus: Int { status ?? code.httpStatus }

    /// For logs only; nothing parses it back.
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
        return RbeeError(.invalidRequest, "invalid request: \(summary)", fieldErrors: errors)
    }

    /// Fields the request gave that rbee does not honour, each named.
    public static func unsupported(_ fields: [String]) -> RbeeError {
        let errors = fields.map { FieldError(field: $0, message: "is not supported by rbee; leave it out") }
        return RbeeError(
            .unsupportedParameter, "unsupported parameter\(fields.count == 1 ? "" : "s"): \(fields.joined(separator: ", "))", fieldErrors: errors)
    }

    /// The same error with `context` in front of its message ("hive b: …").
    public func prefixed(_ context: String) -> RbeeError {
        var copy = self
        copy.message = context + ": " + message
        return copy
    }
}

extension RbeeError: Codable {
    enum CodingKeys: String, CodingKey {
        case code, message, details
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            wireCode: try container.decode(ErrorCode.self, forKey: .code), message: try container.decode(String.self, forKey: .message),
            details: try container.decodeIfPresent([String: JSONValue].self, forKey: .details) ?? [:])
    }

    /// An error as a wire carries it: field errors are taken out of `details.errors`.
    init(wireCode code: ErrorCode, message: String, details: [String: JSONValue]) {
        var details = details
        var fieldErrors: [FieldError] = []
        if case .array(let items)? = details["errors"] {
            fieldErrors = items.compactMap { item in
                guard case .object(let fields) = item, case .string(let field)? = fields["field"], case .string(let text)? = fields["message"]
                else { return nil }
                return FieldError(field: field, message: text)
            }
            if fieldErrors.count == items.count { details.removeValue(forKey: "errors") } else { fieldErrors = [] }
        }
        self.init(code, message, details: details, fieldErrors: fieldErrors)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(code, forKey: .code)
        try container.encode(message, forKey: .message)
        if let wire = wireDetails { try container.encode(wire, forKey: .details) }
    }

    /// `details` with the field errors folded in, as the wire carries them; nil when empty.
    var wireDetails: [String: JSONValue]? {
        var wire = details
        if !fieldErrors.isEmpty {
            wire["errors"] = .array(fieldErrors.map { .object(["field": .string($0.field), "message": .string($0.message)]) })
        }
        return wire.isEmpty ? nil : wire
    }
}

/// The native error body: `{"error":{"code","message","details","correlation_id"}}`.
public struct ErrorEnvelope: Codable, Sendable, Equatable {
    public var error: RbeeError
    public var correlationID: String?

    public init(_ error: RbeeError, correlationID: String?) {
        self.error = error
        self.correlationID = correlationID
    }

    /// The `error` object as the wire has it; the envelope always carries `details`.
    private struct Body: Codable {
        var code: ErrorCode
        var message: String
        var details: [String: JSONValue]?
        var correlationID: String?

        enum CodingKeys: String, CodingKey {
            case code, message, details
            case correlationID = "correlation_id"
        }
    }

    private struct Wire: Codable { var error: Body }

    public init(from decoder: any Decoder) throws {
        let body = try Wire(from: decoder).error
        error = RbeeError(wireCode: body.code, message: body.message, details: body.details ?? [:])
        correlationID = body.correlationID
    }

    public func encode(to encoder: any Encoder) throws {
        try Wire(error: Body(code: error.code, message: error.message, details: error.wireDetails ?? [:], correlationID: correlationID))
            .encode(to: encoder)
    }
}
