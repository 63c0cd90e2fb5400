internal import CLlama
internal import CRbeeChat
import Foundation
import RbeeAPI

/// A request's `OutputConstraint` as llama.cpp GBNF, converted and checked against the model's
/// vocabulary when the request is prepared, so a bad schema or grammar is a 400 before the job
/// is queued.
struct OutputGrammar: Sendable {
    let text: String
    /// For the grammar of a rendering with tools: the rendering (its triggers, laziness and
    /// generation prompt), which `rbee_chat_grammar_sampler_init` builds the sampler from.
    private(set) var chatRendering: String?

    /// The tool calls' grammar a chat rendering asks for, checked by building it once.
    init(chatRendering rendering: ChatRendering, model: LlamaModel) throws(RbeeError) {
        text = rendering.grammar
        chatRendering = rendering.outputFormat
        guard let sampler = makeSampler(model: model) else {
            throw RbeeError.invalid([.init(field: "tools", message: "llama.cpp cannot build a grammar for these tools")])
        }
        llama_sampler_free(sampler)
    }

    /// Converts a schema with llama.cpp's converter, or checks a grammar with its parser. Throws
    /// `INVALID_REQUEST` naming the field and the fault (the schema path, the grammar's line).
    init(_ constraint: OutputConstraint, model: LlamaModel) throws(RbeeError) {
        let field = constraint.field
        if let schema = constraint.schema {
            text = try Self.convert(schema, field: field)
        } else if case .grammar(let grammar) = constraint {
            text = grammar
            if let problem = rbee_grammar_check(model.vocab, grammar) {
                throw RbeeError.invalid([.init(field: field, message: "does not parse: " + takeChatString(problem))])
            }
        } else {
            throw RbeeError(.internalError, "an output constraint with neither schema nor grammar")
        }
        // The parser accepted it; llama.cpp also refuses left recursion when it builds the grammar.
        guard let sampler = makeSampler(model: model) else {
            throw RbeeError.invalid([.init(field: field, message: "llama.cpp cannot build this grammar (a rule is left-recursive)")])
        }
        llama_sampler_free(sampler)
    }

    /// A grammar sampler at the grammar's start: each job owns one, so its state is its own.
    func makeSampler(model: LlamaModel) -> UnsafeMutablePointer<llama_sampler>? {
        guard let chatRendering else { return llama_sampler_init_grammar(model.vocab, text, "root") }
        var error: UnsafeMutablePointer<CChar>?
        let sampler = rbee_chat_grammar_sampler_init(model.vocab, chatRendering, &error)
        rbee_chat_string_free(error)
        return sampler
    }

    /// Checks that a schema converts, naming `field` when it does not.
    static func check(_ schema: JSONValue, field: String) throws(RbeeError) {
        _ = try convert(schema, field: field)
    }

    private static func convert(_ schema: JSONValue, field: String) throws(RbeeError) -> String {
        let json: String
        do {
            // Sorted keys: the same schema always makes the same grammar (see rbee_json_schema_to_grammar
            // for the order of properties).
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            json = String(decoding: try encoder.encode(schema), as: UTF8.self)
        } catch {
            throw RbeeError.invalid([.init(field: field, message: "cannot be encoded as JSON")])
        }
        var error: UnsafeMutablePointer<CChar>?
        guard let grammar = rbee_json_schema_to_grammar(json, &error) else {
            throw RbeeError.invalid([.init(field: field, message: "cannot be enforced: " + takeChatString(error))])
        }
        return takeChatString(grammar)
    }
}
