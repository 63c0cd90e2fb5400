import Foundation
import RbeeAPI
import RbeeHive
import RbeeTestSupport
import Testing

/// Acceptance 1, 2, 4 and 6 of the hive issue: downloads of the real model from a local server.
@Suite(.serialized) struct DownloadTests {
    static func server(_ behaviour: ModelServer.Behaviour = .init()) async throws -> ModelServer {
        let server = try await ModelServer.start(files: [modelURLPath: modelPath, "/org/text/resolve/main/notes.gguf": "/etc/hostname"])
        server.set(behaviour)
        return server
    }

    @Test func subscribersFollowOneDownloadToCompleteAndALateOneGetsTheResultAtOnce() async throws {
        let server = try await Self.server(.init(chunkDelay: .milliseconds(4)))
        let hive = try await RunningHive.start(server: server)
        let (status, body) = try await hive.download(modelRef)
        #expect(status == .accepted)
        let started = try JSONDecoder().decode(DownloadStarted.self, from: body)
        #expect(started.status == .downloading)
        let id = try #require(started.downloadID)

        async let first = hive.follow(id)
        async let second = hive.follow(id)
        for result in try await [first, second] {
            #expect(result.done)
            let bytes = result.events.compactMap { if case .downloading(let done, _, _, _, _) = $0 { done } else { nil } }
            #expect(bytes == bytes.sorted(), "progress went backwards")
            #expect(bytes.count > 10, "too few progress events: \(bytes.count)")
            #expect(result.events.last == .complete(localPath: hive.home + "/models/gemma-3-270m-q4_k_m.gguf", sha256: modelSHA256, sizeBytes: modelSize))
        }
        let late = try await hive.follow(id)
        #expect(late.done)
        #expect(late.events.count == 1)
        #expect(late.events.first.map { if case .complete = $0 { true } else { false } } == true)
        #expect(hive.modelFiles == ["gemma-3-270m-q4_k_m.gguf"])
        #expect(server.requests == 1)
        let metrics = String(decoding: try await get(hive.baseURL + "/metrics").1, as: UTF8.self)
        #expect(metrics.contains(#"rbee_hive_downloads_total{outcome="completed"} 1"#) && metrics.contains("rbee_hive_bytes_downloaded_total \(modelSize)"), "\(metrics)")

        // Now cached, and catalogued with the facts of its header.
        let (again, againBody) = try await hive.download(modelRef)
        #expect(again == .ok)
        #expect(try JSONDecoder().decode(DownloadStarted.self, from: againBody).status == .cached)
        let info = try #require(try await hive.service.provisioner.catalog.model(id: "gemma-3-270m-q4_k_m"))
        #expect(info.architecture == "gemma3")
        #expect(info.layerCount == 18)
        #expect(info.quantization == "Q4_K_M")
        #expect(info.sha256 == modelSHA256)
        try await hive.stop()
        await server.stop()
    }

    @Test func aDroppedConnectionIsResumedWithRange() async throws {
        let server = try await Self.server(.init(dropAtFraction: 0.4))
        let hive = try await RunningHive.start(server: server)
        let result = try await hive.downloadToEnd(modelRef)
        #expect(result.map { if case .complete(_, let sha, let size) = $0 { sha == modelSHA256 && size == modelSize } else { false } } == true)
        #expect(server.requests == 2)
        let resumedAt = try #require(server.ranges.last.flatMap { Int($0.dropFirst(6).split(separator: "-").first ?? "") })
        #expect(resumedAt <= modelSize * 4 / 10 && resumedAt >= modelSize * 35 / 100, "resumed at byte \(resumedAt)")
        #expect(Double(server.bytesSent) <= Double(modelSize) * 1.05, "fetched \(server.bytesSent) bytes for a \(modelSize)-byte file")
        try await hive.stop()
        await server.stop()
    }

    @Test func twentyConcurrentRequestsShareOneDownload() async throws {
        let server = try await Self.server(.init(chunkDelay: .milliseconds(2)))
        let hive = try await RunningHive.start(server: server)
        let answers = try await withThrowingTaskGroup(of: DownloadStarted.self) { group in
            for _ in 0..<20 {
                group.addTask { try JSONDecoder().decode(DownloadStarted.self, from: try await hive.download(modelRef).1) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(answers.compactMap(\.downloadID)).count == 1)
        let id = try #require(answers.first?.downloadID)
        #expect(try await hive.follow(id).events.last.map { if case .complete = $0 { true } else { false } } == true)
        #expect(server.requests == 1)
        try await hive.stop()
        await server.stop()
    }

    @Test func eachFailureHasItsOwnErrorAndLeavesNoFileUnderItsFinalName() async throws {
        let server = try await Self.server()
        let hive = try await RunningHive.start(server: server) { $0.downloads.attempts = 2 }

        let wrong = String(repeating: "0", count: 64)
        let mismatch = try await hive.downloadToEnd(modelRef, sha256: wrong)
        #expect(mismatch.map { if case .failed(let error) = $0 { error.code.rawValue == "CHECKSUM_MISMATCH" } else { false } } == true)
        #expect(hive.modelFiles.isEmpty)

        let missing = try await hive.downloadToEnd("hf:google/nothing:absent.gguf")
        #expect(missing.map { if case .failed(let error) = $0 { error.code.rawValue == "MODEL_NOT_FOUND" } else { false } } == true)

        server.set(.init(linkedETag: String(repeating: "a", count: 64)))
        let announced = try await hive.downloadToEnd(modelRef)
        #expect(announced.map { if case .failed(let error) = $0 { error.code.rawValue == "CHECKSUM_MISMATCH" } else { false } } == true)
        #expect(hive.modelFiles.isEmpty)

        server.set(.init(status: 403))
        let forbidden = try await hive.downloadToEnd("hf:google/private:model.gguf")
        guard case .failed(let forbiddenError)? = forbidden else {
            Issue.record("expected a failure, got \(String(describing: forbidden))")
            return
        }
        #expect(forbiddenError.code == .downloadFailed)
        #expect(forbiddenError.message.contains("HF_TOKEN"))

        server.set(.init(stallAfterBytes: 1 << 20))
        let stalled = try await hive.downloadToEnd(modelRef)
        #expect(stalled.map { if case .failed(let error) = $0 { error.code.rawValue == "DOWNLOAD_TIMEOUT" } else { false } } == true)
        #expect(!hive.modelFiles.contains("gemma-3-270m-q4_k_m.gguf"))
        try? FileManager.default.removeItem(atPath: hive.home + "/models/gemma-3-270m-q4_k_m.gguf.partial")

        server.set(.init())
        let notGGUF = try await hive.downloadToEnd("hf:org/text:notes.gguf")
        guard case .failed(let notGGUFError)? = notGGUF else {
            Issue.record("expected a failure, got \(String(describing: notGGUF))")
            return
        }
        #expect(notGGUFError.code == .downloadFailed)
        #expect(notGGUFError.message.contains("not a usable GGUF"))

        let (traversal, body) = try await hive.download("hf:org/../../etc:passwd.gguf")
        #expect(traversal == .badRequest)
        #expect(try JSONDecoder().decode(ErrorEnvelope.self, from: body).error.code == "INVALID_MODEL_REF")
        let (outside, outsideBody) = try await hive.download("file:/etc/hostname.gguf")
        #expect(outside == .badRequest)
        #expect(try JSONDecoder().decode(ErrorEnvelope.self, from: outsideBody).error.code == "INVALID_MODEL_REF")

        #expect(hive.modelFiles.allSatisfy { $0.hasSuffix(".partial") }, "files left: \(hive.modelFiles)")
        #expect(try await hive.service.provisioner.catalog.list().isEmpty)
        try await hive.stop()
        await server.stop()
    }

    @Test func stoppingTheHiveEndsRunningDownloadsWithCancelledAndKeepsThePartialFile() async throws {
        let server = try await Self.server(.init(chunkDelay: .milliseconds(20)))
        let hive = try await RunningHive.start(server: server)
        let started = try JSONDecoder().decode(DownloadStarted.self, from: try await hive.download(modelRef).1)
        let id = try #require(started.downloadID)
        async let followed = hive.follow(id)
        try await Task.sleep(for: .milliseconds(500))
        try await hive.stop()
        let result = try await followed
        #expect(result.done)
        #expect(result.events.last.map { if case .failed(let error) = $0 { error.code.rawValue == "CANCELLED" } else { false } } == true)
        #expect(hive.modelFiles == ["gemma-3-270m-q4_k_m.gguf.partial"])
        await server.stop()
    }

    @Test func aCorruptedTransferIsFetchedOnceMoreFromZeroAndASecondOneEndsTheDownload() async throws {
        let server = try await Self.server(.init(corruptTransfers: 1))
        let hive = try await RunningHive.start(server: server)
        let started = try JSONDecoder().decode(DownloadStarted.self, from: try await hive.download(modelRef, sha256: modelSHA256).1)
        let result = try await hive.follow(try #require(started.downloadID))
        #expect(result.events.last == .complete(localPath: hive.home + "/models/gemma-3-270m-q4_k_m.gguf", sha256: modelSHA256, sizeBytes: modelSize))
        #expect(server.requests == 2)
        #expect(server.ranges.last == "", "the retry starts from zero")
        let attempts = result.events.compactMap { if case .downloading(_, _, _, _, let attempt) = $0 { attempt } else { nil } }
        #expect(attempts.first == 1 && attempts.last == 2 && attempts == attempts.sorted(), "attempts seen: \(attempts)")
        try await hive.stop()
        await server.stop()

        let always = try await Self.server(.init(corruptTransfers: 3))
        let second = try await RunningHive.start(server: always)
        let failed = try await second.downloadToEnd(modelRef, sha256: modelSHA256)
        guard case .failed(let error)? = failed else {
            Issue.record("expected CHECKSUM_MISMATCH, got \(String(describing: failed))")
            return
        }
        #expect(error.code == .checksumMismatch)
        #expect(always.requests == 2, "one retry, not more")
        #expect(second.modelFiles.isEmpty, "files left: \(second.modelFiles)")
        try await second.stop()
        await always.stop()
    }

    @Test func aDownloadLargerThanTheFreeDiskIsRefusedBeforeItsFirstByte() async throws {
        let server = try await Self.server(.init(announcedSize: 1 << 60))
        let hive = try await RunningHive.start(server: server)
        let (status, body) = try await hive.download(modelRef)
        #expect(status.code == 507)
        let error = try JSONDecoder().decode(ErrorEnvelope.self, from: body).error
        #expect(error.code == "INSUFFICIENT_DISK")
        #expect(server.heads == 1 && server.requests == 0, "no transfer started")
        #expect(hive.modelFiles.isEmpty, "files left: \(hive.modelFiles)")

        let disk = try #require(try await get(hive.baseURL + "/v1/devices", as: DeviceInventory.Devices.self).modelDisk)
        #expect(disk.path == hive.home + "/models")
        #expect(disk.freeBytes > 0 && disk.totalBytes >= disk.freeBytes)
        try await hive.stop()
        await server.stop()
    }

    @Test func theFirstFrameOfAResumedDownloadStartsFromTheBytesOnDisk() async throws {
        let server = try await Self.server(.init(chunkDelay: .milliseconds(5)))
        let hive = try await RunningHive.start(server: server)
        let onDisk = modelSize * 6 / 10
        let source = try FileHandle(forReadingFrom: URL(fileURLWithPath: modelPath))
        let prefix = try source.read(upToCount: onDisk) ?? Data()
        try source.close()
        try prefix.write(to: URL(fileURLWithPath: hive.home + "/models/gemma-3-270m-q4_k_m.gguf.partial"))

        let started = try JSONDecoder().decode(DownloadStarted.self, from: try await hive.download(modelRef).1)
        let result = try await hive.follow(try #require(started.downloadID))
        guard case .downloading(let bytes, let total, _, _, _)? = result.events.first else {
            Issue.record("first event: \(String(describing: result.events.first))")
            return
        }
        #expect(bytes == onDisk && total == modelSize)
        #expect(server.ranges == ["bytes=\(onDisk)-"])
        for frame in result.frames.dropLast(2) {
            #expect(frame.contains(#""bytes_total":\#(modelSize)"#) && frame.contains(#""eta_s":"#), "frame: \(frame)")
        }
        #expect(result.events.last == .complete(localPath: hive.home + "/models/gemma-3-270m-q4_k_m.gguf", sha256: modelSHA256, sizeBytes: modelSize))
        try await hive.stop()
        await server.stop()
    }

    @Test func unknownDownloadIdsGet404() async throws {
        let hive = try await RunningHive.start(server: nil)
        let progress = try await hive.follow("dl-unknown")
        #expect(progress.status == .notFound)
        try await hive.stop()
    }
}
