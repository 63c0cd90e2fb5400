import Prometheus
import RbeeAPI
import RbeeHTTP
import RbeeInference

/// The worker's Prometheus metrics (`rbee_worker_…`), each family with its HELP and TYPE.
public final class WorkerMetrics: Sendable {
    public let registry = MetricRegistry(program: "worker")
    private let completed: Counter
    private let cancelled: Counter
    private let failed: Counter
    private let rejected: Counter
    private let promptTokens: Counter
    private let generatedTokens: Counter
    private let promptCacheHits: Counter
    private let cachedTokens: Counter
    private let timeToFirstToken: DurationHistogram
    private let interTokenLatency: DurationHistogram
    private let queueDepth: Gauge
    private let slotsBusy: Gauge
    private let slotsTotal: Gauge
    private let cacheRAMBytes: Gauge

    public init() {
        let requests = "Requests by how they ended: completed, cancelled, error, or rejected (queue full)."
        completed = registry.counter("requests_total", help: requests, labels: [("outcome", "completed")])
        cancelled = registry.counter("requests_total", help: requests, labels: [("outcome", "cancelled")])
        failed = registry.counter("requests_total", help: requests, labels: [("outcome", "error")])
        rejected = registry.counter("requests_total", help: requests, labels: [("outcome", "rejected")])
        promptTokens = registry.counter("prompt_tokens_total", help: "Prompt tokens evaluated.")
        generatedTokens = registry.counter("generated_tokens_total", help: "Tokens generated.")
        promptCacheHits = registry.counter("prompt_cache_hits_total", help: "Requests that started from a prefix their slot already held.")
        cachedTokens = registry.counter("cached_tokens_total", help: "Prompt tokens served from a slot's cells instead of evaluated.")
        timeToFirstToken = registry.durationHistogram(
            "time_to_first_token_seconds", help: "From admission to the first generated token.", buckets: MetricRegistry.latencyBuckets)
        interTokenLatency = registry.durationHistogram(
            "inter_token_latency_seconds", help: "Between consecutive tokens of a stream.", buckets: MetricRegistry.latencyBuckets)
        queueDepth = registry.gauge("queue_depth", help: "Requests waiting for a slot.")
        slotsBusy = registry.gauge("slots_busy", help: "Slots generating now.")
        slotsTotal = registry.gauge("slots_total", help: "Slots of this worker (--parallel).")
        cacheRAMBytes = registry.gauge("cache_ram_bytes", help: "Host RAM held by slot states kept for prompt reuse.")
    }

    func recordRejected() { rejected.increment() }

    func recordInterToken(_ duration: Duration) { interTokenLatency.recordNanoseconds(duration.nanoseconds) }

    /// Records a finished request from its terminal event.
    func record(terminal event: InferenceEvent) {
        switch event {
        case .end(let stats):
            (stats.stopReason == .cancelled ? cancelled : completed).increment()
            promptTokens.increment(by: Int64(stats.promptTokens - stats.cachedTokens))
            if stats.cachedTokens > 0 {
                promptCacheHits.increment()
                cachedTokens.increment(by: Int64(stats.cachedTokens))
            }
            generatedTokens.increment(by: Int64(stats.tokensOut))
            if stats.tokensOut > 0 { timeToFirstToken.recordNanoseconds(Int64(stats.ttftMs * 1_000_000)) }
        case .error:
            // Its code is counted where it is answered: the error middleware, or a stream's frame.
            failed.increment()
        case .started, .token, .reasoning, .toolCall:
            break
        }
    }

    /// Prometheus text, with the gauges read from the engine at scrape time.
    func render(_ snapshot: Engine.Snapshot) -> String {
        queueDepth.set(Int64(snapshot.queueDepth))
        slotsBusy.set(Int64(snapshot.slotsBusy))
        slotsTotal.set(Int64(snapshot.slotsTotal))
        cacheRAMBytes.set(Int64(snapshot.promptCache.bytes))
        return registry.render()
    }
}
