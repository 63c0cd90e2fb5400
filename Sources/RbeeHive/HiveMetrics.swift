import Prometheus
import RbeeAPI
import RbeeHTTP

/// The hive's Prometheus metrics (`rbee_hive_…`): downloads and their bytes, spawns, workers by
/// state and why they stopped, errors by code.
public final class HiveMetrics: Sendable {
    public let registry = MetricRegistry(program: "hive")
    private let bytesDownloaded: Counter
    private let downloadsActive: Gauge
    private let workersByState: [HiveWorkerState: Gauge]

    public init() {
        bytesDownloaded = registry.counter("bytes_downloaded_total", help: "Bytes of models received from download servers.")
        downloadsActive = registry.gauge("downloads_active", help: "Downloads (and verifications of imports) under way.")
        let states: [HiveWorkerState] = [.starting, .loading, .ready, .stopping, .stopped, .failed]
        let registry = registry
        workersByState = Dictionary(
            uniqueKeysWithValues: states.map {
                ($0, registry.gauge("workers", help: "Workers of this hive by state (ended ones while still listed).", labels: [("state", $0.rawValue)]))
            })
    }

    func recordBytes(_ count: Int) { bytesDownloaded.increment(by: Int64(count)) }

    /// A download (or an import's verification) ended: `completed`, `failed` or `cancelled`.
    /// A failure's code also counts as an error answer: it ends the download's progress stream.
    func recordDownload(_ terminal: DownloadProgress) {
        let outcome: String
        switch terminal {
        case .complete: outcome = "completed"
        case .failed(let error) where error.code == .cancelled: outcome = "cancelled"
        case .failed: outcome = "failed"
        case .downloading: return
        }
        registry.counter("downloads_total", help: "Downloads ended, by outcome.", labels: [("outcome", outcome)]).increment()
        if case .failed(let error) = terminal { registry.recordError(error.code) }
    }

    /// A spawn's worker ended its start: `launched` (its process runs) or `failed` (its model,
    /// memory, or the launch itself failed, or it was stopped first).
    func recordSpawn(launched: Bool) {
        registry.counter("spawns_total", help: "Workers spawned, by whether their process started.", labels: [("outcome", launched ? "launched" : "failed")])
            .increment()
    }

    /// A worker's process ended: why (`requested`, `shutdown`, `idle`, `unhealthy`, `silent`,
    /// `loading_timeout`, `load_failed`, or `crashed` when nobody asked).
    func recordStop(reason: String) {
        registry.counter("worker_stops_total", help: "Worker processes ended, by reason.", labels: [("reason", reason)]).increment()
    }

    func render(downloadsActive active: Int, workers: [HiveWorkerInfo]) -> String {
        for (state, gauge) in workersByState { gauge.set(Int64(workers.filter { $0.state == state }.count)) }
        downloadsActive.set(Int64(active))
        return registry.render()
    }
}
