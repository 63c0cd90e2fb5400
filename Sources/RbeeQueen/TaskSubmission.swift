import RbeeAPI

/// A task as one of the queen's APIs states it, validated at the edge into the native
/// `TaskRequest`: every field error is reported at once, in the names the client used.
struct TaskSubmission: Sendable {
    enum Dialect: Sendable {
        /// `POST /v2/tasks`: the worker's fields plus `model` and `hive`; streams by default.
        case native
        /// `POST /v1/chat/completions`: `messages`; OpenAI's names and defaults.
        case chat
        /// `POST /v1/completions`: `prompt`; OpenAI's names and defaults.
        case completion
    }

    var task: TaskRequest
    /// OpenAI streams carry `usage` in their final chunk unless `stream_options.include_usage` is false.
    var includeUsage = true
    /// OpenAI's `user`: logged with the task, not sent on.
    var user: String?
    /// The model as the client named it (or the default that stood in), which OpenAI's answers
    /// repeat, whatever reference the queen serves it by.
    var requestedModel: String { requested ?? task.model }
    var requested: String?

    /// `defaultModel` stands in for an OpenAI request's missing `model`.
    static func parse(_ json: JSONValue, dialect: Dialect, defaultModel: String? = nil) throws(RbeeError) -> TaskSubmission {
        guard case .object(var body) = json else {
            throw RbeeError.invalid([.init(field: "body", message: "must be a JSON object, got \(json.typeName)")])
        }
        var errors: [RbeeError.FieldError] = []
        var includeUsage = true
        var submissionUser: String?
        if dialect != .native {
            if body["model"] == nil || body["model"] == .null, let defaultModel { body["model"] = .string(defaultModel) }
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
            // OpenAI fields that ask for nothing beyond the defaults; `user` is only logged.
            if case .string(let user)? = body.removeValue(forKey: "user") { submissionUser = user }
            for (field, neutral) in Self.neutralOpenAIFields {
                if let value = body[field], value == .null || neutral.contains(value) { body.removeValue(forKey: field) }
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
        var task: TaskRequest?
        do {
            task = try TaskRequest(json: .object(body))
        } catch {
            if error.code == .unsupportedParameter { throw error }
            // The chat route names its conversation `messages` even where the worker says prompt.
            errors += error.fieldErrors.map { field in
                dialect == .chat && field.field == "prompt" ? RbeeError.FieldError(field: "messages", message: field.message) : field
            }
            if error.fieldErrors.isEmpty { errors.append(.init(field: "body", message: error.message)) }
        }
        guard errors.isEmpty, let task else { throw RbeeError.invalid(Self.unique(errors)) }
        return TaskSubmission(task: task, includeUsage: includeUsage, user: submissionUser)
    }

    /// OpenAI request fields whose values here ask for what rbee does anyway: dropped when they
    /// hold one of these (or null); any other value is a field rbee does not honour.
    static let neutralOpenAIFields: [(String, [JSONValue])] = [
        ("logprobs", [false]), ("store", [false]), ("service_tier", ["auto", "default"]), ("metadata", [.object([:])]),
        ("modalities", [["text"]]), ("echo", [false]), ("best_of", [1]),
    ]

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
