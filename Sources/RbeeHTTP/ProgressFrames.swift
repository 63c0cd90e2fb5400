import RbeeAPI

/// A progress stream (loading, download) as SSE frames: each event as `data: <json>`, then
/// `[DONE]` once the source ends — `ProgressBroadcast` ends it after the terminal event.
public struct ProgressFrames<Event: StreamEvent>: AsyncSequence, Sendable {
    public typealias Element = String
    public typealias Failure = Never
    let events: AsyncStream<Event>

    public init(_ events: AsyncStream<Event>) { self.events = events }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var source: AsyncStream<Event>.AsyncIterator
        var done = false

        public mutating func next() async -> String? {
            if done { return nil }
            guard let event = await source.next() else {
                done = true
                return SSE.done
            }
            return SSE.frame(event)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: events.makeAsyncIterator()) }
}
