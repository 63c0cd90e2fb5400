import Logging
import RbeeAPI
import RbeeInference

/// Turns an engine output stream into SSE frames that always end with exactly one terminal event
/// and `[DONE]`: if the source ever ended without one, an `INTERNAL` error is sent in its place.
/// Keep-alive ticks become comment lines. It also feeds the request metrics as events pass, and
/// logs the end with the request's logger (its correlation id).
struct InferenceEventFrames: AsyncSequence, Sendable {
    typealias Element = String
    typealias Failure = Never

    let events: AsyncStream<EngineOutput>
    let metrics: WorkerMetrics
    let jobID: String
    let logger: Logger

    /// How a job ended, in the worker's log, under the request's correlation id.
    static func logEnd(_ event: InferenceEvent, jobID: String, logger: Logger) {
        switch event {
        case .end(let stats):
            logger.info(
                "inference ended",
                metadata: [
                    "job_id": "\(jobID)", "stop_reason": "\(stats.stopReason.rawValue)", "tokens_out": "\(stats.tokensOut)",
                    "prompt_tokens": "\(stats.promptTokens)", "ttft_ms": "\(Int(stats.ttftMs))",
                ])
        case .error(let error):
            logger.warning("inference failed", metadata: ["job_id": "\(jobID)", "code": "\(error.code)", "error": "\(error.message)"])
        default:
            break
        }
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        var source: AsyncStream<EngineOutput>.AsyncIterator
        let metrics: WorkerMetrics
        let jobID: String
        let logger: Logger
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
                InferenceEventFrames.logEnd(event, jobID: jobID, logger: logger)
            case .reasoning, .toolCall:
                let now = ContinuousClock.now
                if let lastToken { metrics.recordInterToken(now - lastToken) }
                lastToken = now
            case .started:
                break
            }
            return SSE.frame(event)
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(source: events.makeAsyncIterator(), metrics: metrics, jobID: jobID, logger: logger)
    }
}
