import RbeeAPI

/// A request's prompt as the engine runs it: its tokens, and every stop string (the request's and
/// the chat template's).
struct PreparedPrompt: Sendable {
    var tokens: [Int32]
    var stops: [String]
    /// The grammar the output must follow, checked.
    var grammar: OutputGrammar?
    /// The chat rendering whose format the output is read in (reasoning, content, tool calls),
    /// or nil when the output is plain text.
    var chatFormat: ChatRendering?
    /// Tokens detokenized as their special text (the format's tool-call markers), so the
    /// output's reader sees them.
    var specialTokens: Set<Int32> = []
}

/// A request accepted by the engine, and the stream its events go to.
final class GenerationJob: Sendable {
    let id: String
    let request: InferenceRequest
    /// The prompt prepared at submission when the model was already loaded; else on admission.
    let prepared: PreparedPrompt?
    let submittedAt: ContinuousClock.Instant
    let deadline: ContinuousClock.Instant?
    let continuation: AsyncStream<EngineOutput>.Continuation

    init(
        id: String, request: InferenceRequest, prepared: PreparedPrompt?, submittedAt: ContinuousClock.Instant,
        deadline: ContinuousClock.Instant?, continuation: AsyncStream<EngineOutput>.Continuation
    ) {
        self.id = id
        self.request = request
        self.prepared = prepared
        self.submittedAt = submittedAt
        self.deadline = deadline
        self.continuation = continuation
    }

    func emit(_ event: InferenceEvent) {
        continuation.yield(.event(event))
    }

    /// Sends a terminal event and closes the stream.
    func finish(_ event: InferenceEvent) {
        continuation.yield(.event(event))
        continuation.finish()
    }

    func finishCancelled(promptTokens: Int = 0) {
        finish(.end(GenerationStats(tokensOut: 0, promptTokens: promptTokens, ttftMs: 0, decodeMs: 0, tokensPerSec: 0, stopReason: .cancelled)))
    }

    func fail(_ error: RbeeError) {
        finish(.error(error))
    }
}
