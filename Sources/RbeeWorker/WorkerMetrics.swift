import CoreMetrics
import Metrics
import Prometheus
import RbeeAPI
import RbeeInference

/// The worker's Prometheus metrics. They are created with an explicit factory rather than the
/// global `MetricsSystem`, so each worker (and each test) has its own registry.
public final class WorkerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let completed: Metrics.Counter
    private let cancelled: Metrics.Counter
    private let failed: Metrics.Counter
    private let rejected: Metrics.Counter
    private let promptTokens: Metrics.Counter
    private let generatedTokens: Metrics.Counter
    private let timeToFirstToken: Metrics.Timer
    private let interTokenLatency: Metrics.Timer
    private let queueDepth: Metrics.Gauge
    private let slotsBusy: Metrics.Gauge
    private let slotsTotal: Metrics.Gauge

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
        ]
        let requests = "rbee_worker_requests_total"
        completed = Metrics.Counter(label: requests, dimensions: [("outcome", "completed")], factory: factory)
        cancelled = Metrics.Counter(label: requests, dimensions: [("outcome", "cancelled")], factory: factory)
        failed = Metrics.Counter(label: requests, dimensions: [("outcome", "error")], factory: factory)
        rejected = Metrics.Counter(label: requests, dimensions: [("outcome", "rejected")], factory: factory)
        promptTokens = Metrics.Counter(label: "rbee_worker_prompt_tokens_total", factory: factory)
        generatedTokens = Metrics.Counter(label: "rbee_worker_generated_tokens_total", factory: factory)
        timeToFirstToken = Metrics.Timer(label: "rbee_worker_time_to_first_token_seconds", factory: factory)
        interTokenLatency = Metrics.Timer(label: "rbee_worker_inter_token_latency_seconds", factory: factory)
        queueDepth = Metrics.Gauge(label: "rbee_worker_queue_depth", factory: factory)
        slotsBusy = Metrics.Gauge(label: "rbee_worker_slots_busy", factory: factory)
        slotsTotal = Metrics.Gauge(label: "rbee_worker_slots_total", factory: factory)
    }

    func recordRejected() { rejected.increment() }

    func recordInterToken(_ duration: Duration) { interTokenLatency.recordNanoseconds(duration.nanoseconds) }

    /// Records a finished request from its terminal event.
    func record(terminal event: InferenceEvent) {
        switch event {
        case .end(let stats):
            (stats.stopReason == .cancelled ? cancelled : completed).increment()
            promptTokens.increment(by: stats.promptTokens)
            generatedTokens.increment(by: stats.tokensOut)
            if stats.tokensOut > 0 { timeToFirstToken.recordNanoseconds(Int64(stats.ttftMs * 1_000_000)) }
        case .error:
            failed.increment()
        case .started, .token:
            break
        }
    }

    /// Prometheus text, with the gauges read from the engine at scrape time.
    func render(_ snapshot: Engine.Snapshot) -> String {
        queueDepth.record(snapshot.queueDepth)
        slotsBusy.record(snapshot.slotsBusy)
        slotsTotal.record(snapshot.slotsTotal)
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
