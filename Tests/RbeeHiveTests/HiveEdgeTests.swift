import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import RbeeAPI
import RbeeHive
import RbeeTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Where a hive used to stall, leak or say too little: huge files, dying and frozen workers,
/// shutdown under way, corrupt or oversized downloads.
@Suite(.serialized) struct HiveEdgeTests {
    /// A model file of `size` bytes whose header is the real model's: the rest is a hole.
    static func sparseModel(in directory: String, name: String, size: Int) throws -> String {
        let path = directory + "/" + name
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: modelPath, toPath: path)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(size))
        try handle.close()
        return path
    }

    @Test func aHugeModelIsRefusedAtOnceFromItsHeaderWhileTheHiveKeepsAnswering() async throws {
        let home = try temporaryHome()
        let huge = try Self.sparseModel(in: home + "/models", name: "huge.gguf", size: 2 << 40)
        let hive = try await SupervisionTests.startHive(home: home)
        let asked = ContinuousClock.now
        async let spawn = post(hive.baseURL + "/v1/workers/spawn", json: #"{"model_ref":"file:\#(huge)"}"#)
        // Other requests are answered meanwhile.
        let (health, _) = try await get(hive.baseURL + "/health")
        #expect(health.status == .ok && ContinuousClock.now - asked < .seconds(1))
        let (refused, body) = try await spawn
        #expect(ContinuousClock.now - asked < .seconds(3), "answered after \(ContinuousClock.now - asked)")
        #expect(refused.status.code == 507, "\(String(decoding: body, as: UTF8.self))")
        let error = try decode(ErrorEnvelope.self, body).error
        #expect(error.code == .insufficientRAM && error.details["bytes_needed"].map { if case .number(let n) = $0 { n > 2e12 } else { false } } == true)
        // The file is catalogued from its header; its hash runs in the background and stops with the hive.
        let info = try #require(try await hive.service.provisioner.catalog.model(id: "huge"))
        #expect(info.sizeBytes == 2 << 40 && info.sha256.isEmpty && info.layerCount == 18)
        let stopping = ContinuousClock.now
        try await hive.stop()
        #expect(ContinuousClock.now - stopping < .seconds(5))
    }
}
