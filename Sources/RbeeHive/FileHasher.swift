import Crypto
import Dispatch
import Foundation
import Synchronization

/// SHA-256 of files, off the cooperative pool: hashing gigabytes is blocking work. It stops
/// when the calling task is cancelled (a hive shutting down does not wait for a 2 TiB file).
enum FileHasher {
    private static let queue = DispatchQueue(label: "rbee.hive.hash", attributes: .concurrent)

    /// `progress` hears the bytes hashed so far, about every 64 MiB.
    static func sha256(path: String, progress: @escaping @Sendable (Int) -> Void = { _ in }) async throws -> String {
        let stop = StopFlag()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                queue.async {
                    continuation.resume(with: Result { try sha256Blocking(path: path, stop: stop, progress: progress) })
                }
            }
        } onCancel: {
            stop.raise()
        }
    }

    static func sha256Blocking(path: String, stop: StopFlag = StopFlag(), progress: (Int) -> Void = { _ in }) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: path])
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        var hashed = 0
        while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty {
            if stop.isRaised { throw CancellationError() }
            hasher.update(data: chunk)
            hashed += chunk.count
            if hashed % (64 << 20) < chunk.count { progress(hashed) }
        }
        return hex(hasher.finalize())
    }

    /// Set from a cancellation handler, read by the hashing loop.
    final class StopFlag: Sendable {
        private let raised = Atomic(false)
        func raise() { raised.store(true, ordering: .relaxed) }
        var isRaised: Bool { raised.load(ordering: .relaxed) }
    }

    static func hex(_ digest: some Sequence<UInt8>) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
