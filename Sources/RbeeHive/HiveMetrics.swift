import CoreMetrics
import Metrics
import Prometheus
import RbeeAPI

/// The hive's Prometheus metrics, on a registry of its own (see `WorkerMetrics`).
public final class HiveMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let bytesDownloaded: Metrics.Counter
    private let downloadsActive: Metrics.Gauge
    private let downloadsCompleted: Metrics.Gauge
    private let downloadsFailed: Metrics.Gauge
    private let workersByState: [HiveWorkerState: Metrics.Gauge]

    public init() {
        let factory = PrometheusMetricsFactory(registry: registry)
        bytesDownloaded = Metrics.Counter(label: "rbee_hive_bytes_downloaded_total", factory: factory)
        let downloads = "rbee_hive_downloads"
        downloadsActive = Metrics.Gauge(label: downloads, dimensions: [("state", "active")], factory: factory)
        downloadsCompleted = Metrics.Gauge(label: downloads, dimensions: [("state", "completed")], factory: factory)
        downloadsFailed = Metrics.Gauge(label: downloads, dimensions: [("state", "failed")], factory: factory)
        let states: [HiveWorkerState] = [.starting, .loading, .ready, .stopping, .stopped, .failed]
        workersByState = Dictionary(
            uniqueKeysWithValues: states.map { ($0, Metrics.Gauge(label: "rbee_hive_workers", dimensions: [("state", $0.rawValue)], factory: factory)) })
    }

    func recordBytes(_ count: Int) { bytesDownloaded.increment(by: count) }

    func render(downloads: (active: Int, completed: Int, failed: Int), workers: [HiveWorkerInfo]) -> String {
        for (state, gauge) in workersByState { gauge.record(workers.filter { $0.state == state }.count) }
        downloadsActive.record(downloads.active)
        downloadsCompleted.record(downloads.completed)
        downloadsFailed.record(downloads.failed)
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
