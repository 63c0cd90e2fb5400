import Synchronization

/// A one-way request to drain and stop, from `POST /v1/shutdown`, a lost parent or a signal.
/// A daemon's drain service waits on it beside the process signals.
public final class ShutdownSwitch: Sendable {
    private struct State {
        var requested = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public func request() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.requested = true
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        waiters.forEach { $0.resume() }
    }

    public var isRequested: Bool { state.withLock { $0.requested } }

    /// Returns once a shutdown is requested, or when the calling task is cancelled.
    public func wait() async {
        let id = state.withLock { state -> Int in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.requested || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}
