/// What a request's output must follow. The worker turns it into a grammar that constrains
/// decoding, so the text it returns follows it by construction, not by the model's good will.
public enum OutputConstraint: Sendable, Equatable {
    /// Any JSON object: OpenAI's `response_format: {"type": "json_object"}`.
    case jsonObject
    /// A JSON schema, and the field it was given in (`json_schema`, llama-server's, by default;
    /// OpenAI's `response_format.json_schema.schema`), so errors name what the client sent.
    case jsonSchema(JSONValue, field: String = "json_schema")
    /// A grammar in llama.cpp's GBNF (`grammar`), starting at its `root` rule.
    case grammar(String)

    /// The schema `json_object` stands for.
    public static let anyObjectSchema: JSONValue = ["type": "object"]

    /// The largest schema or grammar accepted, in bytes of its JSON or text.
    public static let maxSize = 256 * 1024

    /// The fields a constraint may be given in; at most one per request.
    static let fields = ["response_format", "json_schema", "grammar"]

    /// The schema to convert, when the constraint is one.
    public var schema: JSONValue? {
        switch self {
        case .jsonObject: Self.anyObjectSchema
        case .jsonSchema(let schema, _): schema
        case .grammar: nil
        }
    }

    /// The field a client gave the constraint in, as errors name it.
    public var field: String {
        switch self {
        case .jsonObject: "response_format"
        case .jsonSchema(_, let field): field
        case .grammar: "grammar"
        }
    }

    /// The field and value a worker accepts for this constraint.
    var wire: (field: String, value: JSONValue) {
        switch self {
        case .jsonObject: ("response_format", ["type": "json_object"])
        case .jsonSchema(let schema, "response_format.json_schema.schema"):
            ("response_format", ["type": "json_schema", "json_schema": ["schema": schema]])
        case .jsonSchema(let schema, "response_format.schema"): ("response_format", ["type": "json_object", "schema": schema])
        case .jsonSchema(let schema, _): ("json_schema", schema)
        case .grammar(let text): ("grammar", .string(text))
        }
    }

    /// JSON Schema keywords that constrain a value but that llama.cpp's grammar converter does not
    /// enforce (it would silently accept values they forbid): a schema using one is refused.
    static let unenforcedKeywords: Set<String> = [
        "not", "if", "then", "else", "multipleOf", "uniqueItems", "contains", "minContains", "maxContains",
        "patternProperties", "propertyNames", "minProperties", "maxProperties", "dependentRequired",
        "dependentSchemas", "dependencies", "unevaluatedProperties", "unevaluatedItems", "additionalItems",
        "$dynamicRef", "$recursiveRef",
    ]
}

extension FieldReader {
    /// Reads `response_format`, `json_schema` and `grammar`: at most one of them, each checked.
    mutating func outputConstraint() -> OutputConstraint? {
        let given = OutputConstraint.fields.filter { field in
            guard let value = body[field], value != .null else { return false }
            // `response_format: {"type": "text"}` asks for nothing.
            if field == "response_format", case .object(let format) = value, format["type"] == .string("text") { return false }
            return true
        }
        if given.count > 1 {
            for field in given { fail(field, "give at most one of \(given.joined(separator: ", ")), not several") }
            return nil
        }
        switch given.first {
        case "response_format"?: return responseFormat()
        case "json_schema"?:
            guard let schema = schema(body["json_schema"] ?? .null, at: "json_schema") else { return nil }
            return .jsonSchema(schema)
        case "grammar"?:
            guard let text = string("grammar") else { return nil }
            if text.allSatisfy(\.isWhitespace) {
                fail("grammar", "must not be empty")
                return nil
            }
            if text.utf8.count > OutputConstraint.maxSize {
                fail("grammar", "must be at most \(OutputConstraint.maxSize) bytes, got \(text.utf8.count)")
                return nil
            }
            return .grammar(text)
        default: return nil
        }
    }

    /// OpenAI's `response_format`: `{"type": "json_object"}` or `{"type": "json_schema",
    /// "json_schema": {"name", "schema", "strict"}}` (`text` was handled by the caller).
    private mutating func responseFormat() -> OutputConstraint? {
        guard case .object(let format)? = body["response_format"] else {
            fail("response_format", "must be an object such as {\"type\": \"json_object\"}, got \(body["response_format"]?.typeName ?? "nothing")")
            return nil
        }
        switch format["type"] {
        case .string("json_object")?:
            // llama-server also takes a schema here.
            if let schema = format["schema"], schema != .null {
                return self.schema(schema, at: "response_format.schema").map { .jsonSchema($0, field: "response_format.schema") }
            }
            return .jsonObject
        case .string("json_schema")?:
            guard case .object(let described)? = format["json_schema"] else {
                fail("response_format.json_schema", "required with type json_schema: an object {\"name\", \"schema\", \"strict\"}")
                return nil
            }
            var valid = true
            if let name = described["name"], name != .null {
                if case .string(let text) = name, !text.isEmpty, text.count <= 64 {} else {
                    fail("response_format.json_schema.name", "must be a string of 1 to 64 characters")
                    valid = false
                }
            }
            if let strict = described["strict"], strict != .null {
                if case .bool = strict {} else {
                    fail("response_format.json_schema.strict", "must be a boolean, got \(strict.typeName)")
                    valid = false
                }
            }
            guard let raw = described["schema"], raw != .null else {
                fail("response_format.json_schema.schema", "required: the JSON schema the answer must follow")
                return nil
            }
            let schema = self.schema(raw, at: "response_format.json_schema.schema")
            guard valid, let schema else { return nil }
            return .jsonSchema(schema, field: "response_format.json_schema.schema")
        default:
            fail("response_format.type", "must be text, json_object or json_schema")
            return nil
        }
    }

    /// A schema object, refused where it uses a keyword the grammar cannot enforce.
    mutating func schema(_ value: JSONValue, at field: String) -> JSONValue? {
        guard case .object = value else {
            fail(field, "must be a JSON schema object, got \(value.typeName)")
            return nil
        }
        let before = errors.count
        checkKeywords(value, at: field)
        return errors.count == before ? value : nil
    }

    /// Walks every subschema; structural errors (a `properties` that is not an object) are
    /// llama.cpp's converter's to report, with its path, on the worker.
    private mutating func checkKeywords(_ schema: JSONValue, at path: String) {
        guard case .object(let object) = schema else { return }
        for key in object.keys.sorted() {
            let value = object[key]!
            if OutputConstraint.unenforcedKeywords.contains(key) {
                fail(path, "uses \(key), which the grammar cannot enforce; remove it or check it after decoding")
                continue
            }
            switch key {
            case "properties", "$defs", "definitions":
                if case .object(let children) = value {
                    for name in children.keys.sorted() { checkKeywords(children[name]!, at: "\(path).\(key).\(name)") }
                }
            case "items", "additionalProperties":
                checkKeywords(value, at: "\(path).\(key)")
            case "prefixItems", "anyOf", "oneOf", "allOf":
                if case .array(let children) = value {
                    for (index, child) in children.enumerated() { checkKeywords(child, at: "\(path).\(key)[\(index)]") }
                }
            default: break
            }
        }
    }
}
