import Foundation
import RbeeAPI
import Synchronization

/// What this machine offers workers: CPU cores, RAM, and NVIDIA GPUs when `nvidia-smi` is there.
public enum DeviceInventory {
    public struct GPU: Sendable, Equatable, Codable {
        public var index: Int
        public var name: String
        public var vramTotalMB: Int
        public var vramFreeMB: Int

        enum CodingKeys: String, CodingKey {
            case index, name
            case vramTotalMB = "vram_total_mb"
            case vramFreeMB = "vram_free_mb"
        }
    }

    /// The file system holding the hive's models.
    public struct Disk: Sendable, Equatable, Codable {
        public var path: String
        public var freeBytes: Int
        public var totalBytes: Int

        enum CodingKeys: String, CodingKey {
            case path
            case freeBytes = "free_bytes"
            case totalBytes = "total_bytes"
        }
    }

    public struct Devices: Sendable, Equatable, Codable {
        public var cpuCores: Int
        public var ramTotalBytes: Int
        public var ramAvailableBytes: Int
        public var gpus: [GPU]
        /// The model directory's disk, when the caller named one.
        public var modelDisk: Disk?

        enum CodingKeys: String, CodingKey {
            case gpus
            case modelDisk = "model_disk"
            case cpuCores = "cpu_cores"
            case ramTotalBytes = "ram_total_bytes"
            case ramAvailableBytes = "ram_available_bytes"
        }
    }

    /// How long an `nvidia-smi` answer is used before it is asked again: heartbeats (every 10 s)
    /// and spawns read the devices, and each run of the tool costs tens of milliseconds.
    static let gpuAnswerLifetime: Duration = .seconds(30)
    private static let gpuAnswer = Mutex<(gpus: [GPU], at: ContinuousClock.Instant)?>(nil)

    /// Reads the devices; `nvidia-smi` runs on a queue of its own, not the cooperative pool, at
    /// most once per `gpuAnswerLifetime`.
    public static func detect(modelDirectory: String? = nil) async -> Devices {
        let memory = memoryInfo()
        let gpus: [GPU]
        if let cached = gpuAnswer.withLock({ $0 }), ContinuousClock.now - cached.at < gpuAnswerLifetime {
            gpus = cached.gpus
        } else {
            gpus = await withCheckedContinuation { continuation in
                DispatchQueue.global().async { continuation.resume(returning: nvidiaGPUs()) }
            }
            gpuAnswer.withLock { $0 = (gpus, .now) }
        }
        return Devices(
            cpuCores: ProcessInfo.processInfo.activeProcessorCount, ramTotalBytes: memory.total, ramAvailableBytes: memory.available,
            gpus: gpus, modelDisk: modelDirectory.flatMap(disk(at:)))
    }

    static func disk(at path: String) -> Disk? {
        guard let attributes = try? FileManager.default.attributesOfFileSystem(forPath: path),
            let free = (attributes[.systemFreeSize] as? NSNumber)?.intValue, let total = (attributes[.systemSize] as? NSNumber)?.intValue
        else { return nil }
        return Disk(path: path, freeBytes: free, totalBytes: total)
    }

    /// `MemTotal` and `MemAvailable` from /proc/meminfo, in bytes.
    static func memoryInfo() -> (total: Int, available: Int) {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else {
            return (Int(ProcessInfo.processInfo.physicalMemory), Int(ProcessInfo.processInfo.physicalMemory))
        }
        var values: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " })
            if parts.count >= 2, let kilobytes = Int(parts[1]) { values[String(parts[0])] = kilobytes * 1024 }
        }
        return (values["MemTotal"] ?? 0, values["MemAvailable"] ?? values["MemFree"] ?? 0)
    }

    static func nvidiaGPUs() -> [GPU] {
        let candidates = ["/usr/bin/nvidia-smi", "/usr/local/bin/nvidia-smi", "/usr/local/nvidia/bin/nvidia-smi"]
        guard let tool = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return [] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return [] }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return [] }
        return output.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count == 4, let index = Int(fields[0]), let total = Int(fields[2]), let free = Int(fields[3]) else { return nil }
            return GPU(index: index, name: fields[1], vramTotalMB: total, vramFreeMB: free)
        }
    }
}
