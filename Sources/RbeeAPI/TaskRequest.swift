/// `POST /v2/tasks` body: a model (catalog id or reference), optionally a hive, and the worker's
/// request fields. The CLI encodes it and the queen validates it, so both speak one type.
public struct TaskRequest: Sendable, Equatable {
    /// The model as the client named it.
    public var model: String
    public var reference: ModelReference
    public var hive: String?
    /// What the worker runs; its `jobID` is the queen's to set.
    public var inference: InferenceRequest

    public init(model: String, hive: String? = nil, inference: InferenceRequest) throws(RbeeError) {
        self.model = model
        self.reference = try ModelReference(parsing: model)
        self.hive = hive
        self.inference = inference
    }

    /// Validates a body, collecting every field error before failing.
    public init(json: JSONValue) throws(RbeeError) {
        guard case .object(var body) = json else {
            throw RbeeError.invalid([.init(field: "body", message: "must be a JSON object, got \(json.typeName)")])
        }
        var errors: [RbeeError.FieldError] = []
        var reference: ModelReference?
        var model = ""
        switch body.removeValue(forKey: "model") {
        case .string(let value)?:
            model = value
            do { reference = try ModelReference(parsing: value) } catch { errors.append(.init(field: "model", message: error.message)) }
        case nil, .null?: errors.append(.init(field: "model", message: "required: a model id or reference"))
        case let other?: errors.append(.init(field: "model", message: "must be a string, got \(other.typeName)"))
        }
        var hive: String?
        switch body.removeValue(forKey: "hive") {
        case nil, .null?: break
        case .string(let value)? where Validation.isValidID(value): hive = value
        default: errors.append(.init(field: "hive", message: "must be a hive name ([A-Za-z0-9._-]{1,64})"))
        }
        // The queen names each attempt's job on the worker itself.
        body.removeValue(forKey: "job_id")
        var inference: InferenceRequest?
        do {
            inference = try InferenceRequest(json: .object(body))
        } catch {
            if error.code == .unsupportedParameter { throw error }
            errors += error.fieldErrors.isEmpty ? [.init(field: "body", message: error.message)] : error.fieldErrors
        }
        guard errors.isEmpty, let reference, let inference else { throw RbeeError.invalid(errors) }
        self.model = model
        self.reference = reference
        self.hive = hive
        self.inference = inference
    }

    /// The body as the queen accepts it.
    public var json: JSONValue {
        guard case .object(var body) = inference.json else { return inference.json }
        body.removeValue(forKey: "job_id")
        body["model"] = .string(model)
        if let hive { body["hive"] = .string(hive) }
        return .object(body)
    }
}

extension TaskRequest: Codable {
    public init(from decoder: any Decoder) throws {
        try self.init(json: try JSONValue(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try json.encode(to: encoder)
    }
}
