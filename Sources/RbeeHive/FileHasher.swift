import Crypto
import Dispatch
import Foundation

/// SHA-256 of files, on a queue of its own: hashing gigabytes is blocking work that must not
/// hold the cooperative pool.
enum FileHasher {
    private static let queue = DispatchQueue(label: "rbee.hive.hash")

    static func sha256(path: String) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try sha256Blocking(path: path) })
            }
        }
    }

    static func sha256Blocking(path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: path])
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        return hex(hasher.finalize())
    }

    static func hex(_ digest: some Sequence<UInt8>) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
