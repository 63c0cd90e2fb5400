import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import RbeeAPI
import RbeeHTTP
import RbeeInference
import ServiceLifecycle

/// Reports to the hive that spawned this worker: `ready` (or the load failure) once, then a
/// heartbeat every interval. When the hive refuses `failureLimit` heartbeats in a row (an error
/// answer, a refused connection) the worker drains and exits, so no worker outlives its hive. A
/// heartbeat the hive does not answer in time is not counted: the hive is alive (its death would
/// end this process) but cannot run, suspended or stopped, and judges its workers once it can.
struct HiveReporter: Service {
    let hiveURL: String
    let configuration: WorkerConfiguration
    let engine: Engine
    let shutdown: ShutdownSwitch
    /// The URL the hive should give out, once the server listens.
    let advertisedURL: @Sendable () async -> String
    let logger: Logger

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await report() }
        } catch is CancellationError {
            return
        }
    }

    private func report() async throws {
        let url = await advertisedURL()
        do {
            try await post("/v1/workers/listening", WorkerListening(workerID: configuration.workerID, url: url, pid: getpid()))
        } catch {
            logger.warning("could not tell the hive where this worker listens", metadata: ["hive": "\(hiveURL)", "error": "\(error)"])
        }
        for await progress in engine.loading.subscribe() where progress.isTerminal {
            let snapshot = engine.snapshot()
            let report = WorkerReadyReport(
                workerID: configuration.workerID, url: url, model: configuration.engine.modelName,
                state: snapshot.state == .error ? .error : .ready, pid: getpid(), slotsTotal: snapshot.slotsTotal,
                error: snapshot.error, chatTemplate: engine.model?.chatTemplate)
            do {
                try await post("/v1/workers/ready", report)
                logger.info("reported to hive", metadata: ["hive": "\(hiveURL)", "state": "\(report.state.rawValue)"])
            } catch {
                logger.warning("could not report readiness to hive", metadata: ["hive": "\(hiveURL)", "error": "\(error)"])
            }
        }
        var failures = 0
        while !Task.isCancelled {
            try await Task.sleep(for: configuration.heartbeatInterval)
            let snapshot = engine.snapshot()
            let beat = WorkerHeartbeat(
                workerID: configuration.workerID, state: snapshot.state, slotsTotal: snapshot.slotsTotal, slotsBusy: snapshot.slotsBusy,
                queueDepth: snapshot.queueDepth, pid: getpid(), jobsAccepted: snapshot.jobsAccepted)
            do {
                try await post("/v1/workers/heartbeat", beat)
                failures = 0
            } catch where RbeeClient.timedOut(error) {
                logger.warning("heartbeat not answered in time; the hive may be suspended (not counted)", metadata: ["hive": "\(hiveURL)"])
            } catch {
                failures += 1
                logger.warning("heartbeat failed", metadata: ["hive": "\(hiveURL)", "failures": "\(failures)", "error": "\(error)"])
                if failures >= configuration.heartbeatFailureLimit {
                    logger.error("hive lost: draining and exiting", metadata: ["hive": "\(hiveURL)"])
                    shutdown.request()
                    return
                }
            }
        }
    }

    private func post(_ path: String, _ body: some Encodable) async throws {
        let client = RbeeClient(token: configuration.token?.value, unreachableCode: .hiveUnreachable)
        // A beat later than the interval is late anyway; 1-5 s.
        let timeout = min(.seconds(5), max(.seconds(1), configuration.heartbeatInterval))
        _ = try await client.call(.POST, hiveURL + path, json: try JSONEncoder().encode(body), timeout: timeout)
    }
}
