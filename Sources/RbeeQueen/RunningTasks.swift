import RbeeAPI
import Synchronization

/// The tasks the queen is running, by id: what `DELETE /v2/tasks/{id}` stops, and what the
/// queen's drain waits for. Once the drain began, no task is admitted.
final class RunningTasks: Sendable {
    private struct State {
        var controls: [String: TaskControl] = [:]
        var draining = false
    }

    private let state = Mutex(State())

    /// A task's entry; it leaves the table when released, however the task ended.
    final class Registration: Sendable {
        let id: String
        let control: TaskControl
        private let tasks: RunningTasks

        fileprivate init(id: String, control: TaskControl, tasks: RunningTasks) {
            self.id = id
            self.control = control
            self.tasks = tasks
        }

        deinit { tasks.remove(id) }
    }

    /// Enters a new task; 503 `UNAVAILABLE` once the queen drains.
    func register(_ id: String) throws(RbeeError) -> Registration {
        let control = TaskControl()
        let admitted = state.withLock { state -> Bool in
            guard !state.draining else { return false }
            state.controls[id] = control
            return true
        }
        guard admitted else { throw RbeeError(.unavailable, "the queen is shutting down", retryAfter: 1) }
        return Registration(id: id, control: control, tasks: self)
    }

    private func remove(_ id: String) {
        state.withLock { _ = $0.controls.removeValue(forKey: id) }
    }

    var count: Int { state.withLock { $0.controls.count } }

    /// Stops a running task; false when no task has that id.
    func stop(_ id: String, reason: TaskStopReason) -> Bool {
        guard let control = state.withLock({ $0.controls[id] }) else { return false }
        control.stop(reason)
        return true
    }

    /// Refuses new tasks from now on.
    func beginDrain() { state.withLock { $0.draining = true } }

    func stopAll(reason: TaskStopReason) {
        for control in state.withLock({ Array($0.controls.values) }) { control.stop(reason) }
    }

    /// Waits until no task runs, or `timeout` passes; returns whether none runs.
    func waitUntilEmpty(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while count > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        return count == 0
    }
}
