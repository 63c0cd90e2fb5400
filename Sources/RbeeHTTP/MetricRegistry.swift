import Prometheus
import RbeeAPI

/// A daemon's Prometheus metrics: every family named `rbee_<program>_…` with its `# HELP` and
/// `# TYPE`, on a registry of its own (each worker, and each test, has its own), and the error
/// answers of the daemon counted by code in `rbee_<program>_errors_total{code}`.
public final class MetricRegistry: Sendable {
    public let prometheus = PrometheusCollectorRegistry()
    /// `worker`, `hive` or `queen`.
    public let program: String

    public init(program: String) {
        self.program = program
    }

    /// The counter `rbee_<program>_<name>` with these labels (made on first use, then the same).
    public func counter(_ name: String, help: String, labels: [(String, String)] = []) -> Counter {
        prometheus.makeCounter(descriptor: descriptor(name, help), labels: labels)
    }

    public func gauge(_ name: String, help: String, labels: [(String, String)] = []) -> Gauge {
        prometheus.makeGauge(descriptor: descriptor(name, help), labels: labels)
    }

    public func durationHistogram(_ name: String, help: String, buckets: [Duration], labels: [(String, String)] = []) -> DurationHistogram {
        prometheus.makeDurationHistogram(descriptor: descriptor(name, help), labels: labels, buckets: buckets)
    }

    /// One error answer (an HTTP error status, or an error event ending a stream).
    public func recordError(_ code: ErrorCode) {
        counter("errors_total", help: "Errors answered by this \(program), by code (HTTP error answers and error events of streams).", labels: [
            ("code", code.rawValue)
        ]).increment()
    }

    /// The text format (`GET /metrics`).
    public func render() -> String {
        var buffer: [UInt8] = []
        prometheus.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    /// Buckets for request latencies, 5 ms to 30 s.
    public static let latencyBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
    ]

    private func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "rbee", subsystem: program, metricName: name, unitName: "", helpText: help)
    }
}
