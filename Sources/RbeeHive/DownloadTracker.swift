import Foundation
import RbeeAPI
import Synchronization

/// Every download the hive runs, by id: any number of subscribers follow one, a late one first
/// gets the latest state, and a finished one keeps its terminal state for `retention` so a late
/// subscriber gets `complete` or `error` rather than a 404. Concurrent requests for one model
/// share its download.
public final class DownloadTracker: Sendable {
    struct Entry: Sendable {
        let modelID: String
        let progress: ProgressBroadcast<DownloadProgress>
        var finishedAt: ContinuousClock.Instant?
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// The running download of each model.
        var activeByModel: [String: String] = [:]
        /// Running downloads, so shutdown can cancel them.
        var tasks: [String: Task<Void, Never>] = [:]
    }

    private let state = Mutex(State())
    let retention: Duration
    /// Told each download's terminal event (metrics).
    let onEnd: @Sendable (DownloadProgress) -> Void

    public init(retention: Duration = .seconds(600), onEnd: @escaping @Sendable (DownloadProgress) -> Void = { _ in }) {
        self.retention = retention
        self.onEnd = onEnd
    }

    /// Starts `work` for `modelID` unless a download of that model is running; returns the
    /// download's id and whether this call started it. `work` reports progress through the
    /// closure it gets and returns the terminal event.
    public func start(
        modelID: String, initial: DownloadProgress = .downloading(bytesDownloaded: 0, bytesTotal: nil, speedMBps: 0, etaS: nil),
        work: @escaping @Sendable (_ report: @escaping @Sendable (DownloadProgress) -> Void) async -> DownloadProgress
    ) -> (downloadID: String, started: Bool) {
        let (id, progress): (String, ProgressBroadcast<DownloadProgress>?) = state.withLock { state in
            prune(&state)
            if let running = state.activeByModel[modelID] { return (running, nil) }
            let id = "dl-" + String(UUID().uuidString.lowercased().prefix(13))
            let progress = ProgressBroadcast<DownloadProgress>(initial: initial, isTerminal: { $0.isTerminal })
            state.entries[id] = Entry(modelID: modelID, progress: progress)
            state.activeByModel[modelID] = id
            return (id, progress)
        }
        guard let progress else { return (id, false) }
        let task = Task {
            let terminal = await work { event in
                if !event.isTerminal { progress.publish(event) }
            }
            progress.publish(terminal)
            self.onEnd(terminal)
            self.state.withLock { state in
                state.entries[id]?.finishedAt = .now
                state.activeByModel[modelID] = nil
                state.tasks[id] = nil
            }
        }
        state.withLock { state in
            if state.entries[id]?.finishedAt == nil { state.tasks[id] = task }
        }
        return (id, true)
    }

    /// Cancels every running download (hive shutdown) and waits for each to publish its end.
    public func cancelAll() async {
        let tasks = state.withLock { Array($0.tasks.values) }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }

    /// The download's events from its latest state on, or nil for an unknown (or expired) id.
    public func subscribe(_ downloadID: String) -> AsyncStream<DownloadProgress>? {
        state.withLock { state in
            prune(&state)
            return state.entries[downloadID]?.progress.subscribe()
        }
    }

    /// The id of the running download of `modelID`, if any.
    public func running(modelID: String) -> String? {
        state.withLock { $0.activeByModel[modelID] }
    }

    public func latest(_ downloadID: String) -> DownloadProgress? {
        state.withLock { $0.entries[downloadID]?.progress.latest }
    }

    /// Counts by stage, for metrics.
    public func counts() -> (active: Int, completed: Int, failed: Int) {
        state.withLock { state in
            var counts = (active: 0, completed: 0, failed: 0)
            for entry in state.entries.values {
                switch entry.progress.latest {
                case .complete?: counts.completed += 1
                case .failed?: counts.failed += 1
                default: counts.active += 1
                }
            }
            return counts
        }
    }

    private func prune(_ state: inout State) {
        let now = ContinuousClock.now
        state.entries = state.entries.filter { _, entry in
            guard let finishedAt = entry.finishedAt else { return true }
            return now - finishedAt < retention
        }
    }
}
