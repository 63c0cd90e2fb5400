import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import RbeeAPI
import RbeeHTTP
import RbeeHive
import RbeeTestSupport
import Synchronization
import Testing

@Suite(.serialized) struct HiveAPITests {
    func get(_ url: String, token: String? = nil) async throws -> (HTTPResponseStatus, Data) {
        var request = HTTPClientRequest(url: url)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response = try await http.execute(request, timeout: .seconds(10))
        return (response.status, Data(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    @Test func healthDevicesMetricsAndTheTokenGuard() async throws {
        let hive = try await RunningHive.start(server: nil) { $0.token = APIToken("hive-secret") }
        let (healthStatus, healthBody) = try await get(hive.baseURL + "/health")
        #expect(healthStatus == .ok)
        let health = try JSONDecoder().decode(HiveHealth.self, from: healthBody)
        #expect(health.apiVersion == RbeeVersion.apiVersion)

        let (refused, refusedBody) = try await get(hive.baseURL + "/v1/devices")
        #expect(refused == .unauthorized)
        #expect(try JSONDecoder().decode(ErrorEnvelope.self, from: refusedBody).error.code == "MISSING_API_KEY")
        let (devicesStatus, devicesBody) = try await get(hive.baseURL + "/v1/devices", token: "hive-secret")
        #expect(devicesStatus == .ok)
        let devices = try JSONDecoder().decode(DeviceInventory.Devices.self, from: devicesBody)
        #expect(devices.cpuCores == ProcessInfo.processInfo.activeProcessorCount)
        #expect(devices.ramTotalBytes > 1 << 30)

        let metrics = String(decoding: try await get(hive.baseURL + "/metrics", token: "hive-secret").1, as: UTF8.self)
        #expect(metrics.contains(#"rbee_hive_workers{state="ready"} 0"#))
        #expect(metrics.contains("rbee_hive_downloads_active 0"))
        #expect(metrics.contains(#"rbee_hive_errors_total{code="MISSING_API_KEY"} 1"#), "the refused request is counted: \(metrics)")
        #expect(prometheusProblems(metrics).isEmpty, "\(prometheusProblems(metrics))")
        try await hive.stop()
    }

    @Test func aWorkerOfAnotherAPIVersionIsRefused() async throws {
        let hive = try await RunningHive.start(server: nil)
        var request = HTTPClientRequest(url: hive.baseURL + "/v1/workers/ready")
        request.method = .POST
        let report = WorkerReadyReport(workerID: "w1", url: "http://127.0.0.1:1", model: "m", state: .ready, pid: 1, slotsTotal: 1, apiVersion: 99)
        request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(report)))
        let response = try await http.execute(request, timeout: .seconds(10))
        let body = Data(buffer: try await response.body.collect(upTo: 1 << 20))
        #expect(response.status == .conflict)
        #expect(try JSONDecoder().decode(ErrorEnvelope.self, from: body).error.code == "VERSION_MISMATCH")
        // An unknown worker's heartbeat is refused, so an orphan gives up.
        var beat = HTTPClientRequest(url: hive.baseURL + "/v1/workers/heartbeat")
        beat.method = .POST
        beat.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(WorkerHeartbeat(workerID: "ghost", state: .ready, slotsTotal: 1, slotsBusy: 0, queueDepth: 0, pid: 1))))
        #expect(try await http.execute(beat, timeout: .seconds(10)).status == .notFound)
        try await hive.stop()
    }

    @Test func aHiveWithAQueenURLSendsHeartbeats() async throws {
        let beats = Mutex<[HiveHeartbeat]>([])
        let router = Router()
        router.post("/v1/hives/heartbeat") { request, _ -> HTTPResponse.Status in
            var request = request
            let body = try await request.collectBody(upTo: 1 << 20)
            if let beat = try? JSONDecoder().decode(HiveHeartbeat.self, from: body) { beats.withLock { $0.append(beat) } }
            return .ok
        }
        let queen = await StandInServer.start(router)
        let hive = try await RunningHive.start(server: nil) {
            $0.queenURL = queen.url
            $0.queenHeartbeatInterval = .milliseconds(200)
            $0.name = "hive-a"
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while beats.withLock({ $0.count }) < 2, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let first = try #require(beats.withLock { $0.first })
        #expect(first.name == "hive-a")
        #expect(first.url == hive.baseURL)
        #expect(first.apiVersion == RbeeVersion.apiVersion)
        #expect(beats.withLock { $0.count } >= 2)
        try await hive.stop()
        await queen.stop()
    }
}
