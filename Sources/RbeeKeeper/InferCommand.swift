import ArgumentParser
import Foundation
import RbeeAPI

/// Sampling flags shared by `infer` and `chat`.
struct SamplingOptions: ParsableArguments {
    @Option(name: [.short, .customLong("model")], help: "Catalog id or model reference (hf:ORG/REPO:FILE.gguf, https://…, file:/…) [RBEE_MODEL, else SmolLM2-135M-Instruct from the cache].")
    var model: String?
    @Option(help: "Run on this hive only.") var hive: String?
    @Option(name: .customLong("max-tokens"), help: "Most tokens to generate (1-32768).") var maxTokens: Int = 256
    @Option(help: "0 (greedy) to 2.") var temperature: Double?
    @Option(name: .customLong("top-p"), help: "Nucleus sampling, 0-1.") var topP: Double?
    @Option(name: .customLong("top-k"), help: "Keep the k likeliest tokens.") var topK: Int?
    @Option(help: "Fixed seed for reproducible output (0-4294967294).") var seed: Int?
    @Option(help: "Stop at this text (repeatable, up to 4).") var stop: [String] = []
    @Flag(name: .customLong("ignore-eos"), help: "Generate exactly --max-tokens tokens (for benchmarks).") var ignoreEOS = false

    func validate() throws {
        if !(1...32768).contains(maxTokens) { throw ValidationError("--max-tokens must be 1…32768") }
        if let temperature, !(0...2).contains(temperature) { throw ValidationError("--temperature must be 0…2") }
        if let topP, !(0...1).contains(topP) { throw ValidationError("--top-p must be 0…1") }
        if stop.count > 4 { throw ValidationError("at most 4 --stop strings") }
        if let seed, !(0...Int(UInt32.max - 1)).contains(seed) { throw ValidationError("--seed must be 0…4294967294") }
    }

    var resolvedModel: String { model ?? Session.defaultModel }

    /// The task to send the queen: the request type the queen validates.
    func request(_ prompt: PromptInput) throws(RbeeError) -> TaskRequest {
        var parameters = SamplingParameters()
        if let temperature { parameters.temperature = temperature }
        if let topP { parameters.topP = topP }
        if let topK { parameters.topK = topK }
        parameters.seed = seed.map { UInt32(truncatingIfNeeded: $0) }
        let inference = InferenceRequest(prompt: prompt, maxTokens: maxTokens, sampling: parameters, stop: stop, ignoreEOS: ignoreEOS)
        return try TaskRequest(model: resolvedModel, hive: hive, inference: inference)
    }
}

/// `rbee infer`: one prompt, tokens streamed to stdout.
struct InferCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Generate from one prompt; tokens go to stdout as they arrive.",
        discussion: """
            Starts a local queen and hive when none answers (and stops them afterwards), shows download
            and loading progress on stderr, and ends with tokens/s and time to first token. Ctrl-C cancels
            the request on the worker and exits 130.
            With --chat the prompt is one user message, rendered with the model's chat template: what an
            instruction-tuned model answers (and stops by itself); without it, the text is continued.
            Examples:
              rbee infer --chat "What is the capital of France?"
              rbee infer "Write a haiku about bees"
              rbee infer -m gemma-3-270m-q4_k_m --max-tokens 32 --temperature 0 "Once upon a time"
              rbee infer --hive gpu-box -m hf:ORG/REPO:model.gguf "Hello"
            """)

    @OptionGroup var queen: QueenOptions
    @OptionGroup var sampling: SamplingOptions
    @Flag(name: .customLong("no-start"), help: "Never start a queen; fail when none answers.") var noStart = false
    @Flag(help: "Send the prompt as a user message, rendered with the model's chat template.") var chat = false
    @Option(help: "With --chat: a system message before the prompt.") var system: String?
    @Argument(help: "The prompt.") var prompt: String

    func validate() throws {
        if prompt.isEmpty { throw ValidationError("the prompt must not be empty") }
        if system != nil, !chat { throw ValidationError("--system needs --chat") }
    }

    func run() async throws {
        let status = StatusLine()
        var messages = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
        messages.append(ChatMessage(role: "user", content: prompt))
        let request = try sampling.request(chat ? .messages(messages) : .text(prompt))
        let interrupts = Interrupts()
        let printer = TaskPrinter(connection: queen.connection, status: status)
        do {
            _ = try await Session.run(queen.connection, autoStart: !noStart, model: sampling.resolvedModel, status: status) { [events = interrupts.events] _ in
                try await printer.run(request, cancelledBy: events)
            }
        } catch {
            if interrupts.interrupted { throw ExitCode(130) }
            throw error
        }
        if interrupts.interrupted { throw ExitCode(130) }
    }
}
