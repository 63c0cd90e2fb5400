import RbeeAPI

/// A task body as one of the queen's APIs states it, validated at the edge: every field error is
/// reported at once, in the names the client used.
struct TaskRequest: Sendable {
    enum Dialect: Sendable {
        /// `POST /v2/tasks`: the worker's fields plus `model` and `hive`; streams by default.
        case native
        /// `POST /v1/chat/completions`: `messages`; OpenAI's names and defaults.
        case chat
        /// `POST /v1/completions`: `prompt`; OpenAI's names and defaults.
        case completion
    }

    var model: String
    var reference: ModelReference
    var hive: String?
    var inference: InferenceRequest
    /// OpenAI streams carry `usage` in their final chunk unless `stream_options.include_usage` is false.
    var includeUsage = true

    static func parse(_ json: JSONValue, dialect: Dialect) throws(RbeeError) -> TaskRequest {
        guard case .object(var body) = json else {
            throw RbeeError.invalid([.init(field: "body", message: "must be a JSON object, got \(json.typeName)")])
        }
        var errors: [RbeeError.FieldError] = []
        var reference: ModelReference?
        var model = ""
        switch body.removeValue(forKey: "model") {
        case .string(let value)?:
            model = value
            do { reference = try ModelReference(parsing: value) } catch {
                errors.append(.init(field: "model", message: error.message))
            }
        case nil, .null?: errors.append(.init(field: "model", message: "required: a model id or reference"))
        case let other?: errors.append(.init(field: "model", message: "must be a string, got \(other.typeName)"))
        }
        var hive: String?
        switch body.removeValue(forKey: "hive") {
        case nil, .null?: break
        case .string(let value)? where Validation.isValidID(value): hive = value
        default: errors.append(.init(field: "hive", message: "must be a hive name ([A-Za-z0-9._-]{1,64})"))
        }
        body.removeValue(forKey: "job_id")
        var includeUsage = true
        if dialect != .native {
            // OpenAI's defaults and names.
            if body["stream"] == nil || body["stream"] == .null { body["stream"] = .bool(false) }
            if let limit = body.removeValue(forKey: "max_completion_tokens"), body["max_tokens"] == nil || body["max_tokens"] == .null {
                body["max_tokens"] = limit
            }
            if body["temperature"] == nil { body["temperature"] = .number(1) }
            switch body.removeValue(forKey: "n") {
            case nil, .null?, .number(1)?: break
            default: errors.append(.init(field: "n", message: "only n=1 is supported"))
            }
            for penalty in ["presence_penalty", "frequency_penalty"] {
                switch body.removeValue(forKey: penalty) {
                case nil, .null?: break
                case .number(let value)? where (-2...2).contains(value): break
                default: errors.append(.init(field: penalty, message: "must be a number between -2 and 2"))
                }
            }
            switch body.removeValue(forKey: "stream_options") {
            case nil, .null?: break
            case .object(let options)?:
                switch options["include_usage"] {
                case nil, .null?: break
                case .bool(let flag)?: includeUsage = flag
                default: errors.append(.init(field: "stream_options.include_usage", message: "must be a boolean"))
                }
            default: errors.append(.init(field: "stream_options", message: "must be an object"))
            }
            switch dialect {
            case .chat:
                if body["prompt"] != nil { errors.append(.init(field: "prompt", message: "chat completions take messages, not prompt")) }
                if body["messages"] == nil { errors.append(.init(field: "messages", message: "required: an array of {role, content}")) }
                if case .array(let messages)? = body["messages"] {
                    // Content given as parts: the text parts, joined.
                    body["messages"] = .array(messages.map(Self.flattenContent))
                }
            case .completion:
                if body["messages"] != nil { errors.append(.init(field: "messages", message: "completions take prompt, not messages")) }
                if case .array(let parts)? = body["prompt"] {
                    if parts.count == 1, case .string = parts[0] { body["prompt"] = parts[0] } else {
                        errors.append(.init(field: "prompt", message: "only a single prompt string is supported"))
                    }
                }
            case .native: break
            }
        }
        var inference: InferenceRequest?
        do {
            inference = try InferenceRequest(json: .object(body))
        } catch {
            if case .array(let items)? = error.details["errors"] {
                for case .object(let item) in items {
                    if case .string(let field)? = item["field"], case .string(let message)? = item["message"] {
                        // The chat route names its conversation `messages` even where the worker says prompt.
                        errors.append(.init(field: dialect == .chat && field == "prompt" ? "messages" : field, message: message))
                    }
                }
            } else {
                errors.append(.init(field: "body", message: error.message))
            }
        }
        guard errors.isEmpty, let reference, let inference else { throw RbeeError.invalid(Self.unique(errors)) }
        return TaskRequest(model: model, reference: reference, hive: hive, inference: inference, includeUsage: includeUsage)
    }

    private static func flattenContent(_ message: JSONValue) -> JSONValue {
        guard case .object(var fields) = message, case .array(let parts)? = fields["content"] else { return message }
        let texts = parts.compactMap { part -> String? in
            guard case .object(let object) = part, case .string(let text)? = object["text"] else { return nil }
            return text
        }
        fields["content"] = .string(texts.joined(separator: "\n"))
        return .object(fields)
    }

    private static func unique(_ errors: [RbeeError.FieldError]) -> [RbeeError.FieldError] {
        var seen = Set<String>()
        return errors.filter { seen.insert($0.field + "\u{0}" + $0.message).inserted }
    }
}
