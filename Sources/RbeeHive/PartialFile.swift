import Crypto
import Dispatch
import Foundation

/// A `<name>.partial` file being downloaded, hashed as bytes are appended.
///
/// `@unchecked Sendable`: the file handle, hasher and counters are touched only inside
/// `queue.sync`/`queue.async` blocks of one serial queue, so no two threads ever see them at
/// once; the queue also keeps this blocking file I/O off the cooperative pool.
final class PartialFile: @unchecked Sendable {
    let path: String
    private let queue = DispatchQueue(label: "rbee.hive.partial-file")
    private var handle: FileHandle?
    private var hasher = SHA256()
    private var hashedBytes = 0

    init(path: String) {
        self.path = path
    }

    /// Bytes already on disk (what a resumed download continues from).
    var size: Int {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? 0
    }

    /// Opens for appending; the hasher catches up with bytes from an earlier run or attempt.
    func open() async throws {
        try await run {
            if !FileManager.default.fileExists(atPath: self.path) {
                _ = FileManager.default.createFile(atPath: self.path, contents: nil)
            }
            let handle = try self.handle ?? FileHandle(forUpdating: URL(fileURLWithPath: self.path))
            self.handle = handle
            let onDisk = Int(try handle.seekToEnd())
            if onDisk != self.hashedBytes {
                self.hasher = SHA256()
                self.hashedBytes = 0
                try handle.seek(toOffset: 0)
                while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty {
                    self.hasher.update(data: chunk)
                    self.hashedBytes += chunk.count
                }
            }
        }
    }

    /// Starts over: the server ignored the Range header.
    func truncate() async throws {
        try await run {
            try self.handle?.truncate(atOffset: 0)
            self.hasher = SHA256()
            self.hashedBytes = 0
        }
    }

    func append(_ data: Data) async throws {
        try await run {
            try self.handle?.write(contentsOf: data)
            self.hasher.update(data: data)
            self.hashedBytes += data.count
        }
    }

    /// Closes the file and returns the sha256 of everything in it.
    func finish() async throws -> String {
        try await run {
            try self.handle?.close()
            self.handle = nil
            return FileHasher.hex(self.hasher.finalize())
        }
    }

    func close() async {
        _ = try? await run {
            try self.handle?.close()
            self.handle = nil
        }
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }
}
