import DequeModule
import Dispatch
import Foundation
import Logging
import RbeeAPI
import RbeeGGUF
import Synchronization

/// Runs inference for one model on one dedicated thread that owns the llama.cpp context.
///
/// Callers never block on the engine: `submit` validates, enqueues and returns a stream at once;
/// the engine thread admits queued requests into free slots, decodes every active slot in one
/// `llama_decode` per step and yields events into each request's stream. Every accepted request
/// gets exactly one terminal event (`end` or `error`), whatever happens.
public final class Engine: Sendable {
    public let configuration: EngineConfiguration
    /// Loading progress for `/v1/loading/progress`: layers loaded, then `ready` or `error`.
    public let loading: ProgressBroadcast<LoadingProgress>

    let shared: Mutex<Shared>
    let wakeup = DispatchSemaphore(value: 0)
    let logger: Logger
    private let exited = ProgressBroadcast<Bool>(isTerminal: { $0 })

    enum Phase: Sendable {
        case created, loading, ready, draining, failed(RbeeError), stopped
    }

    struct Shared: Sendable {
        var phase: Phase = .created
        var model: LlamaModel?
        var pending: Deque<GenerationJob> = []
        /// Jobs the engine thread holds in slots.
        var active: [String: GenerationJob] = [:]
        /// Cancellations for the engine thread to apply at its next step.
        var cancelled: Set<String> = []
        var cancelAll = false
        var stopRequested = false
        /// Requests accepted since start: a changing count means the worker is in use.
        var jobsAccepted = 0
        /// The host-RAM prompt cache as the engine thread last left it.
        var promptCache = PromptCacheInfo(bytes: 0, entries: 0, limitBytes: 0)
    }

    public init(configuration: EngineConfiguration, logger: Logger = Logger(label: "rbee.engine")) {
        self.configuration = configuration
        self.logger = logger
        // The header gives the layer total before loading starts; a bad file reports its error later.
        let layers = (try? GGUFFile(path: configuration.modelPath))?.blockCount ?? 0
        self.loading = ProgressBroadcast(
            initial: .loading(layersLoaded: 0, layersTotal: layers, vramMB: 0, ramMB: 0), isTerminal: { $0.isTerminal })
        self.shared = Mutex(Shared())
    }

    /// Sends a keep-alive into every queued and running job's stream every
    /// `configuration.keepAliveInterval`, until the calling task is cancelled or the engine has
    /// stopped. One ticker serves every stream, off the engine thread, so streams also tick while
    /// the model loads; its owner is whoever runs the engine (`EngineService`).
    public func runKeepAlives() async {
        guard let interval = configuration.keepAliveInterval else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            let (jobs, stopped): ([GenerationJob], Bool) = shared.withLock { state in
                if case .stopped = state.phase { return ([], true) }
                return (Array(state.pending) + Array(state.active.values), false)
            }
            if stopped { return }
            for job in jobs { job.continuation.yield(.keepAlive) }
        }
    }

    /// Starts the engine thread: it loads the model, then serves the queue until `shutdown`.
    public func start() {
        let shouldStart = shared.withLock { state -> Bool in
            guard case .created = state.phase else { return false }
            state.phase = .loading
            return true
        }
        guard shouldStart else { return }
        let thread = Thread { [self] in
            EngineLoop(engine: self).run()
            exited.publish(true)
        }
        thread.name = "rbee-engine"
        thread.stackSize = 8 << 20
        thread.start()
    }

    // MARK: Requests

    /// Accepts a request and returns its event stream at once. Throws `ALL_SLOTS_BUSY` (with
    /// `Retry-After`) when the queue is full, `UNAVAILABLE` while draining or after a failed load,
    /// `CONTEXT_LENGTH_EXCEEDED` or `INVALID_REQUEST` when the prompt cannot run, and 409
    /// `JOB_EXISTS` when a job of that id is queued or running (checked in the same step as it is
    /// enqueued, so of two concurrent requests with one id exactly one is refused).
    public func submit(_ request: InferenceRequest, jobID: String, deadline: ContinuousClock.Instant? = nil) async throws(RbeeError)
        -> AsyncStream<EngineOutput>
    {
        let submittedAt = ContinuousClock.now
        var prepared: PreparedPrompt?
        if let model = shared.withLock({ $0.model }) {
            prepared = try await prepareOffPool(request, model: model)
        }
        let (stream, continuation) = AsyncStream<EngineOutput>.makeStream()
        let job = GenerationJob(
            id: jobID, request: request, prepared: prepared, submittedAt: submittedAt, deadline: deadline, continuation: continuation)
        let refusal: RbeeError? = shared.withLock { state in
            switch state.phase {
            case .draining, .stopped:
                return RbeeError(.unavailable, "the worker is shutting down", retryAfter: 1)
            case .failed(let error):
                return RbeeError(.unavailable, "the model failed to load: \(error.message)")
            case .created, .loading, .ready:
                break
            }
            guard state.active[jobID] == nil, !state.pending.contains(where: { $0.id == jobID }) else {
                return RbeeError(.jobExists, "job_id \(jobID) is already queued or running", details: ["job_id": .string(jobID)])
            }
            // `maxQueue` bounds the requests that wait for a slot: while a slot is free nothing waits.
            let waiting = state.pending.count + state.active.count - configuration.parallel
            guard waiting < configuration.maxQueue else {
                return RbeeError(
                    .allSlotsBusy, "all \(configuration.parallel) slots are busy and \(state.pending.count) requests are queued",
                    details: ["slots_total": .number(Double(configuration.parallel)), "queue_depth": .number(Double(state.pending.count)),
                              "max_queue": .number(Double(configuration.maxQueue))],
                    retryAfter: 1)
            }
            state.pending.append(job)
            state.jobsAccepted += 1
            return nil
        }
        if let refusal {
            continuation.finish()
            throw refusal
        }
        // A consumer that goes away (client disconnect) cancels the job.
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { self?.cancel(jobID: jobID) }
        }
        wakeup.signal()
        return stream
    }

    /// Prompt preparation for `submit` and `renderPrompt`: rendering and tokenizing a prompt of up to
    /// 4 MiB is CPU work that must not hold one of the cooperative pool's few threads.
    private let preparation = DispatchQueue(label: "rbee.prompt-preparation")

    private func prepareOffPool(_ request: InferenceRequest, model: LlamaModel) async throws(RbeeError) -> PreparedPrompt {
        try await offPool { () throws(RbeeError) in try self.prepare(request, model: model) }
    }

    private func offPool<T: Sendable>(_ work: @escaping @Sendable () throws(RbeeError) -> T) async throws(RbeeError) -> T {
        let result: Result<T, RbeeError> = await withCheckedContinuation { continuation in
            preparation.async { continuation.resume(returning: Result { () throws(RbeeError) in try work() }) }
        }
        return try result.get()
    }

    /// The prompt text a request's `messages` become with the model's chat template (what
    /// `/apply-template` answers), rendered off the cooperative pool. `UNAVAILABLE` until the model
    /// is loaded.
    public func renderPrompt(_ request: InferenceRequest) async throws(RbeeError) -> ChatRendering {
        guard let model = shared.withLock({ $0.model }) else {
            throw RbeeError(.unavailable, "the model is not loaded yet", retryAfter: 1)
        }
        return try await offPool { () throws(RbeeError) in try Self.render(request, model: model) }
    }

    private static func render(_ request: InferenceRequest, model: LlamaModel) throws(RbeeError) -> ChatRendering {
        switch request.prompt {
        case .text(let text): return ChatRendering(prompt: text, additionalStops: [])
        case .messages(let messages):
            var conversation = ChatConversation(
                messages: messages, addGenerationPrompt: request.addGenerationPrompt, chatTemplateKwargs: request.chatTemplateKwargs,
                reasoningFormat: request.reasoningFormat.rawValue)
            if let tools = request.tools {
                // Each tool's schema converts, or the error names the tool.
                for (index, tool) in tools.tools.enumerated() {
                    if case .object(let object) = tool, case .object(let function)? = object["function"], let parameters = function["parameters"],
                        parameters != .null
                    {
                        try OutputGrammar.check(parameters, field: "tools[\(index)].function.parameters")
                    }
                }
                let rendered = tools.rendered
                conversation.tools = .array(rendered.tools)
                conversation.toolChoice = rendered.choice
                conversation.parallelToolCalls = tools.parallelCalls
            }
            return try model.renderChat(conversation)
        }
    }

    /// Renders and tokenizes a prompt, checking it fits a slot's context; the template's own stop
    /// strings join the request's; an output constraint becomes a checked grammar.
    func prepare(_ request: InferenceRequest, model: LlamaModel) throws(RbeeError) -> PreparedPrompt {
        let rendering = try Self.render(request, model: model)
        let tokens = model.tokenize(rendering.prompt, addSpecial: true)
        let limit = configuration.contextSize
        guard tokens.count < limit else {
            throw RbeeError(
                .contextLengthExceeded, "the prompt has \(tokens.count) tokens; a slot's context holds \(limit), leaving no room to generate",
                details: ["prompt_tokens": .number(Double(tokens.count)), "context_size": .number(Double(limit))])
        }
        let extra = rendering.additionalStops.filter { !$0.isEmpty && !request.stop.contains($0) }
        var grammar = try request.constraint.map { constraint throws(RbeeError) in try OutputGrammar(constraint, model: model) }
        var prepared = PreparedPrompt(tokens: tokens, stops: request.stop + extra, grammar: grammar)
        // With tools, or a thinking template whose reasoning goes apart, the output is read in the
        // rendering's format; a tool choice that must call gets the calls' grammar.
        let calling = request.tools.map { $0.choice != .none } ?? false
        if !rendering.outputFormat.isEmpty, calling || (rendering.supportsThinking && request.reasoningFormat == .auto) {
            prepared.chatFormat = rendering
            if calling, !rendering.grammar.isEmpty {
                grammar = try OutputGrammar(chatRendering: rendering, model: model)
                prepared.grammar = grammar
            }
            prepared.specialTokens = Set(
                rendering.preservedTokens.compactMap { text in
                    let tokens = model.tokenize(text, addSpecial: false)
                    return tokens.count == 1 ? tokens[0] : nil
                })
        }
        return prepared
    }

    /// Cancels a queued or running job; unknown or finished ids are ignored (idempotent).
    public func cancel(jobID: String) {
        let queued: GenerationJob? = shared.withLock { state in
            if let index = state.pending.firstIndex(where: { $0.id == jobID }) {
                return state.pending.remove(at: index)
            }
            if state.active[jobID] != nil { state.cancelled.insert(jobID) }
            return nil
        }
        if let queued {
            queued.finishCancelled()
        } else {
            wakeup.signal()
        }
    }

    // MARK: Lifecycle

    /// Refuses new work from now on; queued and running jobs continue.
    public func beginDrain() {
        shared.withLock { state in
            switch state.phase {
            case .failed, .stopped: break
            default: state.phase = .draining
            }
        }
    }

    /// Cancels every queued and running job (each ends with `stop_reason: cancelled`).
    public func cancelAll() {
        let queued: [GenerationJob] = shared.withLock { state in
            state.cancelAll = true
            defer { state.pending.removeAll() }
            return Array(state.pending)
        }
        queued.forEach { $0.finishCancelled() }
        wakeup.signal()
    }

    /// Waits until no job is queued or running, or `timeout` passes. Returns whether it is idle.
    public func waitUntilIdle(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let snapshot = self.snapshot()
            if snapshot.slotsBusy == 0, snapshot.queueDepth == 0 { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// Cancels what is left, stops the engine thread and frees the model. Waits for the thread.
    public func shutdown() async {
        let started = shared.withLock { state -> Bool in
            state.stopRequested = true
            if case .created = state.phase {
                state.phase = .stopped
                return false
            }
            return true
        }
        cancelAll()
        guard started else { return }
        for await _ in exited.subscribe() {}
    }

    // MARK: Status

    /// A consistent view of the engine for `/health`, `/v1/ready` and metrics.
    public struct Snapshot: Sendable {
        public var state: WorkerState
        public var slotsTotal: Int
        public var slotsBusy: Int
        public var queueDepth: Int
        public var jobsAccepted: Int
        public var error: RbeeError?
        public var promptCache: PromptCacheInfo
    }

    public func snapshot() -> Snapshot {
        shared.withLock { state in
            let busy = state.active.count
            let workerState: WorkerState
            var error: RbeeError?
            switch state.phase {
            case .created, .loading: workerState = .loading
            case .ready: workerState = busy >= configuration.parallel ? .busy : .ready
            case .draining, .stopped: workerState = .draining
            case .failed(let failure):
                workerState = .error
                error = failure
            }
            return Snapshot(
                state: workerState, slotsTotal: configuration.parallel, slotsBusy: busy, queueDepth: state.pending.count,
                jobsAccepted: state.jobsAccepted, error: error, promptCache: state.promptCache)
        }
    }

    /// The loaded model, once loading succeeded.
    public var model: LlamaModel? { shared.withLock { $0.model } }
}

