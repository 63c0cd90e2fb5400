import Foundation
import RbeeAPI

#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#endif

/// Where rbee's programs find each other: `rbee` starts `queen-rbee`, the queen starts
/// `rbee-hive`, a hive starts `llm-worker-rbee`. They are installed side by side, so each looks
/// next to its own executable — found from the running process (`/proc/self/exe` on Linux,
/// `_NSGetExecutablePath` on macOS), not from `argv[0]`, which is a bare name when the program was
/// found through `PATH`. `RBEE_BIN_DIR` overrides the directory.
public enum ProgramDirectory {
    /// The directory holding this process's executable (symlinks resolved), or `RBEE_BIN_DIR`.
    public static func current(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let override = environment["RBEE_BIN_DIR"], !override.isEmpty { return override }
        return (executablePath() as NSString).deletingLastPathComponent
    }

    /// The sibling program `name`, or an error naming where it was looked for.
    public static func program(_ name: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(RbeeError) -> String {
        let directory = current(environment: environment)
        let path = directory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            let source = environment["RBEE_BIN_DIR"].map { _ in "RBEE_BIN_DIR" } ?? "the directory of \(executablePath())"
            throw RbeeError(
                .unavailable, "\(name) is not installed next to this program: \(path) is not an executable file (looked in \(source))",
                details: ["program": .string(name), "looked_in": .string(directory)])
        }
        return path
    }

    /// The running executable's absolute path.
    public static func executablePath() -> String {
        #if os(Linux)
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        #elseif canImport(Darwin)
        var size: UInt32 = 0
        _ = _NSGetExecutablePath(nil, &size)
        var buffer = [CChar](repeating: 0, count: Int(size) + 1)
        if _NSGetExecutablePath(&buffer, &size) == 0 {
            return URL(fileURLWithPath: String(cString: buffer)).resolvingSymlinksInPath().path
        }
        #endif
        return URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().path
    }
}
