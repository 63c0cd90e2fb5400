import CoreMetrics
import Metrics
import Prometheus
import RbeeAPI

/// The queen's Prometheus metrics, on a registry of its own: requests, queue, time to first
/// token and decode rate per model and hive.
public final class QueenMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let tasks: Metrics.Counter
    private let queueDepth: Metrics.Gauge
    private let hivesOnline: Metrics.Gauge
    private let hivesUnreachable: Metrics.Gauge
    private let workers: Metrics.Gauge

    public init() {
        factory = PrometheusMetricsFactory(registry: registry)
        tasks = Metrics.Counter(label: "rbee_queen_tasks_total", factory: factory)
        queueDepth = Metrics.Gauge(label: "rbee_queen_queue_depth", factory: factory)
        hivesOnline = Metrics.Gauge(label: "rbee_queen_hives", dimensions: [("status", "online")], factory: factory)
        hivesUnreachable = Metrics.Gauge(label: "rbee_queen_hives", dimensions: [("status", "unreachable")], factory: factory)
        workers = Metrics.Gauge(label: "rbee_queen_workers", factory: factory)
    }

    func taskStarted() { tasks.increment() }

    /// `model`: the catalog id of the worker the task was placed on, "-" when it never was: labels
    /// come from the catalog, never from what a client typed, so the series stay bounded.
    func taskFailed(model: String?, code: ErrorCode) {
        Metrics.Counter(label: "rbee_queen_task_errors_total", dimensions: [("model", model ?? "-"), ("code", code.rawValue)], factory: factory)
            .increment()
    }

    func taskFinished(model: String, hive: String, ttftMs: Double, tokens: Int, tokensPerSec: Double) {
        let dimensions = [("model", model), ("hive", hive)]
        Metrics.Timer(label: "rbee_queen_time_to_first_token_seconds", dimensions: dimensions, factory: factory)
            .recordNanoseconds(Int64(ttftMs * 1_000_000))
        Metrics.Counter(label: "rbee_queen_tokens_total", dimensions: dimensions, factory: factory).increment(by: tokens)
        Metrics.Gauge(label: "rbee_queen_tokens_per_second", dimensions: dimensions, factory: factory).record(tokensPerSec)
    }

    func render(queued: Int, hives: [HiveRecord], workers count: Int) -> String {
        queueDepth.record(queued)
        hivesOnline.record(hives.filter { $0.status == .online }.count)
        hivesUnreachable.record(hives.filter { $0.status == .unreachable }.count)
        workers.record(count)
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
