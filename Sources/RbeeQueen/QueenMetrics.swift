import Prometheus
import RbeeAPI
import RbeeHTTP

/// The queen's Prometheus metrics (`rbee_queen_…`): tasks, queue, hives, workers, time to first
/// token and decode rate per model and hive, errors by code.
public final class QueenMetrics: Sendable {
    public let registry = MetricRegistry(program: "queen")
    private let tasks: Counter
    private let queueDepth: Gauge
    private let hivesOnline: Gauge
    private let hivesUnreachable: Gauge
    private let workers: Gauge

    public init() {
        tasks = registry.counter("tasks_total", help: "Tasks admitted (native and OpenAI requests).")
        queueDepth = registry.gauge("queue_depth", help: "Tasks waiting for a worker.")
        let hives = "Registered hives by status."
        hivesOnline = registry.gauge("hives", help: hives, labels: [("status", "online")])
        hivesUnreachable = registry.gauge("hives", help: hives, labels: [("status", "unreachable")])
        workers = registry.gauge("workers", help: "Workers the queen knows of, on every hive.")
    }

    func taskStarted() { tasks.increment() }

    /// `model`: the catalog id of the worker the task was placed on, "-" when it never was: labels
    /// come from the catalog, never from what a client typed, so the series stay bounded.
    /// `streamed`: the error went out as a stream's event; otherwise it is an HTTP error answer,
    /// which the error middleware counts in `errors_total`.
    func taskFailed(model: String?, code: ErrorCode, streamed: Bool) {
        registry.counter(
            "task_errors_total", help: "Tasks that ended with an error, by model and code.", labels: [("model", model ?? "-"), ("code", code.rawValue)]
        ).increment()
        if streamed { registry.recordError(code) }
    }

    func taskFinished(model: String, hive: String, ttftMs: Double, tokens: Int, tokensPerSec: Double) {
        let labels = [("model", model), ("hive", hive)]
        registry.durationHistogram(
            "time_to_first_token_seconds", help: "From admission to the first token, by model and hive.", buckets: MetricRegistry.latencyBuckets,
            labels: labels
        ).recordNanoseconds(Int64(ttftMs * 1_000_000))
        registry.counter("tokens_total", help: "Tokens relayed, by model and hive.", labels: labels).increment(by: Int64(tokens))
        registry.gauge("tokens_per_second", help: "Decode rate of the last task, by model and hive.", labels: labels).set(tokensPerSec)
    }

    func render(queued: Int, hives: [HiveRecord], workers count: Int) -> String {
        queueDepth.set(Int64(queued))
        hivesOnline.set(Int64(hives.filter { $0.status == .online }.count))
        hivesUnreachable.set(Int64(hives.filter { $0.status == .unreachable }.count))
        workers.set(Int64(count))
        return registry.render()
    }
}
