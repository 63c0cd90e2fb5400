import Synchronization

/// Fans one job's progress out to any number of subscribers. A subscriber that arrives late
/// first receives the latest state, and after the end the terminal state, so it never waits on
/// a job that already finished (SPEC §2 rule 5).
public final class ProgressBroadcast<Event: Sendable>: Sendable {
    private struct State {
        var latest: Event?
        var finished = false
        var nextID = 0
        var subscribers: [Int: AsyncStream<Event>.Continuation] = [:]
    }

    private let state: Mutex<State>
    private let isTerminal: @Sendable (Event) -> Bool

    /// - Parameter isTerminal: events after which the broadcast is over.
    public init(initial: Event? = nil, isTerminal: @escaping @Sendable (Event) -> Bool) {
        self.state = Mutex(State(latest: initial))
        self.isTerminal = isTerminal
    }

    /// The latest event, if any.
    public var latest: Event? { state.withLock { $0.latest } }

    public var isFinished: Bool { state.withLock { $0.finished } }

    /// Sends `event` to every subscriber; a terminal event also finishes every stream.
    /// Events after a terminal one are ignored.
    public func publish(_ event: Event) {
        let terminal = isTerminal(event)
        let targets: [AsyncStream<Event>.Continuation] = state.withLock { state in
            guard !state.finished else { return [] }
            state.latest = event
            if terminal { state.finished = true }
            let targets = Array(state.subscribers.values)
            if terminal { state.subscribers.removeAll() }
            return targets
        }
        for continuation in targets {
            continuation.yield(event)
            if terminal { continuation.finish() }
        }
    }

    /// A stream that starts with the latest event and ends after the terminal one.
    /// A slow subscriber loses intermediate events, never the latest or the terminal one.
    public func subscribe(bufferingNewest limit: Int = 64) -> AsyncStream<Event> {
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .bufferingNewest(limit))
        let id: Int? = state.withLock { state in
            if let latest = state.latest { continuation.yield(latest) }
            if state.finished { return nil }
            let id = state.nextID
            state.nextID += 1
            state.subscribers[id] = continuation
            return id
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }
}
