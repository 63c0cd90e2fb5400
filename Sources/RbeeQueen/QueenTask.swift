import Foundation
import RbeeAPI
import Synchronization

/// One request to the queen, validated at the edge: what to run, and for whom.
struct QueenTask: Sendable {
    let id: String
    /// The model as the client named it.
    let model: String
    let want: Scheduler.Want
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

/// Why a task stopped early.
enum TaskStopReason: Sendable {
    /// The client went away: nobody reads the stream any more.
    case clientGone
    /// `DELETE /v2/tasks/{id}`: the stream ends with `end {stop_reason: cancelled}`.
    case cancelRequested
    case deadline
}

/// The one writer of a task's output: guarantees a single terminal event, then the end of the
/// stream, and remembers when it last wrote (for keep-alives).
final class TaskEmitter: Sendable {
    private struct State {
        var lastOutput = ContinuousClock.now
        var finished = false
        var queuedSent = false
        var startedSent = false
        var relaying = false
        var stopReason: TaskStopReason?
        var jobID: String?
        var workerURL: String?
    }

    private let continuation: AsyncStream<TaskOutput>.Continuation
    private let state = Mutex(State())

    init(_ continuation: AsyncStream<TaskOutput>.Continuation) { self.continuation = continuation }

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

    /// The worker job the task is relaying now, for cancellation.
    func relaying(jobID: String?, workerURL: String?) {
        state.withLock { state in
            state.relaying = jobID != nil
            state.jobID = jobID
            state.workerURL = workerURL
        }
    }

    var currentJob: (jobID: String, workerURL: String)? {
        state.withLock { state in
            guard let id = state.jobID, let url = state.workerURL else { return nil }
            return (id, url)
        }
    }

    var isRelaying: Bool { state.withLock { $0.relaying } }

    /// Records why the task is being stopped; the first reason wins.
    func stop(_ reason: TaskStopReason) -> Bool {
        state.withLock { state in
            guard state.stopReason == nil, !state.finished else { return false }
            state.stopReason = reason
            return true
        }
    }

    var stopReason: TaskStopReason? { state.withLock { $0.stopReason } }
}
