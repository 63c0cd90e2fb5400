import Foundation

/// Facts read from a GGUF file's header without loading it: enough to reject a corrupt or
/// truncated file with a clear message before llama.cpp sees it, and to describe a model.
public struct GGUFFile: Sendable {
    public var version: UInt32
    public var tensorCount: Int
    public var fileSize: Int
    /// Scalar metadata (strings and numbers); arrays are summarised by their length.
    public var metadata: [String: GGUFValue]

    public var architecture: String? { metadata["general.architecture"]?.string }
    public var name: String? { metadata["general.name"]?.string }
    public var blockCount: Int? { architecture.flatMap { metadata["\($0).block_count"]?.integer } }
    public var contextLength: Int? { architecture.flatMap { metadata["\($0).context_length"]?.integer } }
    /// `general.file_type`, llama.cpp's quantization id (15 = Q4_K_M).
    public var fileType: Int? { metadata["general.file_type"]?.integer }
    public var quantization: String? { fileType.flatMap { GGUFFile.fileTypeNames[$0] } }
    public var parameterCount: Int?

    /// Reads and checks the header of the file at `path`.
    public init(path: String) throws(GGUFError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw GGUFError("cannot read \(path): \(error.localizedDescription)")
        }
        try self.init(data: data)
    }

    public init(data: Data) throws(GGUFError) {
        var reader = Reader(data: data)
        guard data.count >= 4, data.prefix(4).elementsEqual("GGUF".utf8) else {
            throw GGUFError("not a GGUF file (the magic bytes are not \"GGUF\")")
        }
        reader.offset = 4
        version = try reader.u32()
        guard (2...3).contains(version) else { throw GGUFError("unsupported GGUF version \(version)") }
        let tensors = try reader.u64()
        let kvCount = try reader.u64()
        // Caps far above any real model, so a corrupt count fails here rather than allocating.
        guard tensors < 1_000_000, kvCount < 1_000_000 else { throw GGUFError("corrupt header: \(tensors) tensors, \(kvCount) keys") }
        tensorCount = Int(tensors)
        fileSize = data.count

        var metadata: [String: GGUFValue] = [:]
        for _ in 0..<kvCount {
            let key = try reader.string()
            let type = try reader.u32()
            metadata[key] = try reader.value(type: type)
        }
        self.metadata = metadata

        var tensorsEnd = 0
        var parameters = 0
        var extents: [(offset: Int, size: Int?)] = []
        for _ in 0..<tensors {
            _ = try reader.string()
            let dims = try reader.u32()
            guard dims <= 8 else { throw GGUFError("corrupt tensor info: \(dims) dimensions") }
            var elements = 1
            for _ in 0..<dims {
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(clamping: try reader.u64()))
                guard !overflow else { throw GGUFError("corrupt tensor info: size overflows") }
                elements = product
            }
            let type = try reader.u32()
            let offset = Int(clamping: try reader.u64())
            parameters += elements
            let size = GGUFFile.tensorTypes[type].map { elements / $0.blockSize * $0.typeSize }
            extents.append((offset, size))
        }
        parameterCount = parameters

        let alignment = metadata["general.alignment"]?.integer ?? 32
        guard alignment > 0 else { throw GGUFError("corrupt header: alignment \(alignment)") }
        let dataStart = (reader.offset + alignment - 1) / alignment * alignment
        for extent in extents {
            tensorsEnd = max(tensorsEnd, dataStart + extent.offset + (extent.size ?? 0))
        }
        guard tensorsEnd <= data.count else {
            throw GGUFError("truncated file: tensor data needs \(tensorsEnd) bytes, the file has \(data.count)")
        }
    }

    /// llama.cpp's `llama_ftype` names for the common quantizations.
    static let fileTypeNames: [Int: String] = [
        0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
        12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
        32: "BF16",
    ]

    /// ggml tensor types: elements per block and bytes per block.
    static let tensorTypes: [UInt32: (blockSize: Int, typeSize: Int)] = [
        0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
        10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
        24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 30: (1, 2),
    ]
}

/// A metadata value; arrays keep only their length.
public enum GGUFValue: Sendable, Equatable {
    case integer(Int)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array(count: Int)

    public var integer: Int? { if case .integer(let value) = self { value } else { nil } }
    public var string: String? { if case .string(let value) = self { value } else { nil } }
}

/// A file that is not a readable GGUF model.
public struct GGUFError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Little-endian reader over the mapped file; every read is bounds-checked.
private struct Reader {
    let data: Data
    var offset = 0

    init(data: Data) { self.data = data }

    mutating func bytes(_ count: Int) throws(GGUFError) -> Data.SubSequence {
        guard count >= 0, count <= data.count - offset else {
            throw GGUFError("truncated header at byte \(offset)")
        }
        let start = data.startIndex + offset
        offset += count
        return data[start..<start + count]
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(GGUFError) -> T {
        let raw = try bytes(MemoryLayout<T>.size)
        var value: T = 0
        for (shift, byte) in raw.enumerated() { value |= T(truncatingIfNeeded: byte) << (8 * shift) }
        return value
    }

    mutating func u32() throws(GGUFError) -> UInt32 { try integer(UInt32.self) }
    mutating func u64() throws(GGUFError) -> UInt64 { try integer(UInt64.self) }

    mutating func string() throws(GGUFError) -> String {
        let length = try u64()
        guard length < 1 << 26 else { throw GGUFError("corrupt string length \(length) at byte \(offset)") }
        return String(decoding: try bytes(Int(length)), as: UTF8.self)
    }

    mutating func value(type: UInt32) throws(GGUFError) -> GGUFValue {
        switch type {
        case 0: .integer(Int(try integer(UInt8.self)))
        case 1: .integer(Int(try integer(Int8.self)))
        case 2: .integer(Int(try integer(UInt16.self)))
        case 3: .integer(Int(try integer(Int16.self)))
        case 4: .integer(Int(try u32()))
        case 5: .integer(Int(try integer(Int32.self)))
        case 6: .float(Double(Float(bitPattern: try u32())))
        case 7: .bool(try integer(UInt8.self) != 0)
        case 8: .string(try string())
        case 9: try array()
        case 10: .integer(Int(clamping: try u64()))
        case 11: .integer(Int(try integer(Int64.self)))
        case 12: .float(Double(bitPattern: try u64()))
        default: throw GGUFError("unknown metadata type \(type) at byte \(offset)")
        }
    }

    mutating func array() throws(GGUFError) -> GGUFValue {
        let elementType = try u32()
        let count = try u64()
        guard count < 1 << 32 else { throw GGUFError("corrupt array length \(count)") }
        let fixedSizes: [UInt32: Int] = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8]
        if let size = fixedSizes[elementType] {
            _ = try bytes(Int(count) * size)
        } else {
            for _ in 0..<count { _ = try value(type: elementType) }
        }
        return .array(count: Int(count))
    }
}
