import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import RbeeAPI
import RbeeHTTP
import ServiceLifecycle

/// With `--queen-url`: registers with the queen and sends a heartbeat every interval (what the
/// hive is, its models and workers); the queen marks a hive silent for 3 intervals unreachable.
struct QueenReporter: Service {
    let queenURL: String
    let name: String
    let hiveID: String
    let interval: Duration
    let token: APIToken?
    let provisioner: ModelProvisioner
    let supervisor: WorkerSupervisor
    /// Waits until the server listens: a heartbeat never announces a port that is not bound yet.
    let hiveURL: @Sendable () async -> String
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var failures = 0
            while !Task.isCancelled {
                do {
                    try await beat()
                    if failures > 0 { logger.info("queen reachable again", metadata: ["queen": "\(queenURL)"]) }
                    failures = 0
                } catch {
                    failures += 1
                    if failures == 1 || failures % 10 == 0 {
                        logger.warning("heartbeat to queen failed", metadata: ["queen": "\(queenURL)", "failures": "\(failures)", "error": "\(error)"])
                    }
                }
                try? await Task.sleep(for: interval)
            }
        }
    }

    private func beat() async throws {
        let devices = await DeviceInventory.detect()
        let version = provisioner.catalog.version
        // An unreadable catalog is left out (not sent as empty), so the queen keeps what it knows.
        let catalog = try? await provisioner.catalog.list()
        let heartbeat = HiveHeartbeat(
            name: name, url: await hiveURL(), cpuCores: devices.cpuCores, ramAvailableBytes: devices.ramAvailableBytes,
            models: catalog?.map(\.id) ?? [], workers: supervisor.list(), catalog: catalog, hiveID: hiveID,
            catalogVersion: catalog == nil ? nil : version)
        let client = RbeeClient(token: token?.value, unreachableCode: .unavailable)
        _ = try await client.call(.POST, queenURL + "/v1/hives/heartbeat", json: try JSONEncoder().encode(heartbeat), timeout: .seconds(5))
    }
}
