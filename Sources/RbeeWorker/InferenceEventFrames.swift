import RbeeAPI
import RbeeInference

/// Turns an engine output stream into SSE frames that always end with exactly one terminal event
/// and `[DONE]`: if the source ever ended without one, an `INTERNAL` error is sent in its place.
/// Keep-alive ticks become comment lines. It also feeds the request metrics as events pass.
struct InferenceEventFrames: AsyncSequence, Sendable {
    typealias Element = String
    typealias Failure = Never

    let events: AsyncStream<EngineOutput>
    let metrics: WorkerMetrics

    struct AsyncIterator: AsyncIteratorProtocol {
        var source: AsyncStream<EngineOutput>.AsyncIterator
        let metrics: WorkerMetrics
        var sentTerminal = false
        var sentDone = false
        var lastToken: ContinuousClock.Instant?

        mutating func next() async -> String? {
            if sentDone { return nil }
            if sentTerminal {
                sentDone = true
                return SSE.done
            }
            let output =
                await source.next()
                ?? .event(.error(RbeeError(.internalError, "the engine closed the stream without a result")))
            guard case .event(let event) = output else { return SSE.keepAlive }
            switch event {
            case .token(let text, let index):
                let now = ContinuousClock.now
                if let lastToken { metrics.recordInterToken(now - lastToken) }
                lastToken = now
                return SSE.tokenFrame(text: text, index: index)
            case .end, .error:
                sentTerminal = true
                metrics.record(terminal: event)
                if case .error(let error) = event { metrics.registry.recordError(error.code) }
            case .started:
                break
            }
            return SSE.frame(event)
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(source: events.makeAsyncIterator(), metrics: metrics)
    }
}
