import Foundation
import RbeeAPI
import RbeeHTTP
import Synchronization

/// One request to the queen, validated at the edge: what to run, and for whom.
struct QueenTask: Sendable {
    let id: String
    /// The model as the client named it.
    let model: String
    let want: PlacementStateMachine.Want
    /// The worker request; its `jobID` is set per attempt.
    let request: InferenceRequest
    let correlationID: String
    /// `X-Request-Deadline`, forwarded unchanged.
    let deadlineHeader: String?
    let deadline: Date?
    let arrivedAt: ContinuousClock.Instant
}

/// What a running task hands its response writer.
enum TaskOutput: Sendable {
    case event(TaskEvent)
    case keepAlive
}

/// Why a task was stopped before it finished.
enum TaskStopReason: Sendable, Equatable {
    /// `DELETE /v2/tasks/{id}`: the stream ends with `end {stop_reason: cancelled}`.
    case cancelRequested
    /// `X-Request-Deadline` passed: `error DEADLINE_EXCEEDED`.
    case deadline
    /// The queen's drain grace ran out: `error UNAVAILABLE`.
    case shutdown
}

/// How a task is stopped from outside its response: `DELETE /v2/tasks/{id}`, its deadline, the
/// queen's drain. The first reason wins; the task's execution hears it at once and ends.
final class TaskControl: Sendable {
    private let stopReason = Mutex<TaskStopReason?>(nil)
    private let signal = ShutdownSwitch()

    var reason: TaskStopReason? { stopReason.withLock { $0 } }

    /// Returns whether this call stopped the task (false: it was stopped already).
    @discardableResult
    func stop(_ reason: TaskStopReason) -> Bool {
        let first = stopReason.withLock { current in
            guard current == nil else { return false }
            current = reason
            return true
        }
        if first { signal.request() }
        return first
    }

    /// Returns once a stop is requested (or the calling task is cancelled).
    func stopped() async { await signal.wait() }
}

/// The one writer of a task's output: guarantees a single terminal event, then the end of the
/// stream, and remembers when it last wrote (for keep-alives) and how many tokens it sent.
final class TaskEmitter: Sendable {
    private struct State {
        var lastOutput = ContinuousClock.now
        var finished = false
        var queuedSent = false
        var startedSent = false
        var relaying = false
        var tokens = 0
    }

    let outputs: AsyncStream<TaskOutput>
    private let continuation: AsyncStream<TaskOutput>.Continuation
    private let state = Mutex(State())

    init() {
        (outputs, continuation) = AsyncStream.makeStream(of: TaskOutput.self, bufferingPolicy: .unbounded)
    }

    func emit(_ event: TaskEvent) {
        let send = state.withLock { state -> Bool in
            guard !state.finished else { return false }
            switch event {
            case .queued:
                if state.queuedSent { return false }
                state.queuedSent = true
            case .started:
                // A request moved to another worker before its first token starts only once.
                if state.startedSent { return false }
                state.startedSent = true
            case .token, .reasoning, .toolCall:
                state.tokens += 1
            default: break
            }
            state.lastOutput = .now
            if event.isTerminal { state.finished = true }
            return true
        }
        guard send else { return }
        continuation.yield(.event(event))
        if event.isTerminal { continuation.finish() }
    }

    func keepAlive() {
        guard state.withLock({ state in
            guard !state.finished else { return false }
            state.lastOutput = .now
            return true
        }) else { return }
        continuation.yield(.keepAlive)
    }

    var isFinished: Bool { state.withLock { $0.finished } }
    var silentFor: Duration { ContinuousClock.now - state.withLock { $0.lastOutput } }
    var tokensSent: Int { state.withLock { $0.tokens } }

    /// Whether a worker's stream is being relayed now (the worker then enforces the deadline).
    var isRelaying: Bool {
        get { state.withLock { $0.relaying } }
        set { state.withLock { $0.relaying = newValue } }
    }
}

/// A task's outputs gathered for a `stream: false` answer.
struct WholeTask: Sendable {
    var model = ""
    var hive = ""
    var workerID = ""
    var text = ""
    var reasoning = ""
    var toolCalls: [ToolCall] = []
    var stats: GenerationStats

    /// Reads the outputs to the end; the task's error event is thrown.
    static func collect(_ outputs: AsyncStream<TaskOutput>) async throws(RbeeError) -> WholeTask {
        var whole = WholeTask(stats: GenerationStats(tokensOut: 0, promptTokens: 0, ttftMs: 0, decodeMs: 0, tokensPerSec: 0, stopReason: .cancelled))
        for await output in outputs {
            guard case .event(let event) = output else { continue }
            switch event {
            case .started(_, let model, let hive, let workerID, _):
                whole.model = model
                whole.hive = hive
                whole.workerID = workerID
            case .token(let piece, _): whole.text += piece
            case .reasoning(let piece, _): whole.reasoning += piece
            case .toolCall(let delta): whole.toolCalls.apply(delta)
            case .end(let stats):
                whole.stats = stats
                return whole
            case .error(let error): throw error
            case .queued, .downloading, .loading: break
            }
        }
        throw RbeeError(.internalError, "the task ended without a result")
    }
}
