// swift-tools-version: 6.0
import Foundation
import PackageDescription

/// llama.cpp is built by `scripts/fetch-llama.sh` into a cache outside the repository, as static
/// libraries, so the binaries need neither `LD_LIBRARY_PATH` nor an rpath. The prefix follows
/// `scripts/versions.env`; `RBEE_LLAMA_DIR` overrides it as it does for the scripts.
let llamaPrefix: String = {
    let env = ProcessInfo.processInfo.environment
    let versions = (try? String(contentsOfFile: Context.packageDirectory + "/scripts/versions.env", encoding: .utf8)) ?? ""
    let version = versions.split(separator: "\n")
        .first { $0.hasPrefix("LLAMA_CPP_PYTHON_VERSION=") }
        .map { String($0.dropFirst("LLAMA_CPP_PYTHON_VERSION=".count)) } ?? "unknown"
    let cache = env["RBEE_CACHE"] ?? (env["HOME"] ?? NSHomeDirectory()) + "/.cache/rbee"
    return (env["RBEE_LLAMA_DIR"] ?? cache + "/llama.cpp-" + version) + "/install"
}()

let llamaSwiftSettings: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-I" + llamaPrefix + "/include"])]

let package = Package(
    name: "rbee",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "llm-worker-rbee", targets: ["llm-worker-rbee"]),
        .executable(name: "rbee-hive", targets: ["rbee-hive"]),
        .executable(name: "queen-rbee", targets: ["queen-rbee"]),
        .executable(name: "rbee", targets: ["rbee"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-async-algorithms.git", from: "1.1.4"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
    ],
    targets: [
        // Wire types shared by every program: requests, events, errors, SSE framing.
        .target(name: "RbeeAPI"),
        // GGUF header reader: facts about a model file without loading it.
        .target(name: "RbeeGGUF"),
        // The llama.cpp headers, found in the cache prefix, and every llama.cpp library, in the
        // one order GNU ld needs for static archives: dependents before their dependencies.
        .target(
            name: "CLlama",
            cSettings: [.unsafeFlags(["-I" + llamaPrefix + "/include"])],
            linkerSettings: [
                .unsafeFlags(["-L" + llamaPrefix + "/lib"]),
                .linkedLibrary("llama-common"), .linkedLibrary("llama-common-base"),
                .linkedLibrary("llama"), .linkedLibrary("ggml"), .linkedLibrary("ggml-cpu"),
                .linkedLibrary("ggml-base"), .linkedLibrary("stdc++"), .linkedLibrary("m"),
            ]
        ),
        // llama.cpp's common library (Jinja chat templates and their fixes, JSON schema to grammar)
        // and its grammar parser behind a plain C API with JSON strings across it; one C++ file
        // that catches every exception.
        .target(
            name: "CRbeeChat",
            dependencies: ["CLlama"],
            cxxSettings: [
                .unsafeFlags(["-I" + llamaPrefix + "/include", "-I" + llamaPrefix + "/include/common", "-I" + llamaPrefix + "/include/internal"])
            ]
        ),
        // Small libc wrappers Swift cannot call directly (variadic prctl).
        .target(name: "CRbeeSystem"),
        // llama.cpp wrapper: model loading, the engine thread, slots, sampling, stop sequences.
        .target(
            name: "RbeeInference",
            dependencies: [
                "CLlama", "CRbeeChat", "RbeeAPI", "RbeeGGUF",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: llamaSwiftSettings
        ),
        // Server glue shared by the daemons: auth, correlation ids, error envelope, SSE responses.
        .target(
            name: "RbeeHTTP",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                "RbeeAPI",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The worker service: routes, metrics, hive reporting, lifecycle.
        .target(
            name: "RbeeWorker",
            dependencies: [
                "RbeeAPI", "RbeeHTTP", "RbeeInference",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: llamaSwiftSettings
        ),
        .executableTarget(
            name: "llm-worker-rbee",
            dependencies: [
                "RbeeWorker", "RbeeAPI", "RbeeHTTP", "RbeeInference", "CRbeeSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: llamaSwiftSettings
        ),
        // The hive: model catalog, downloads, devices, worker supervision.
        .target(
            name: "RbeeHive",
            dependencies: [
                "RbeeAPI", "RbeeHTTP", "RbeeGGUF",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "rbee-hive",
            dependencies: [
                "RbeeHive", "RbeeAPI", "RbeeHTTP", "CRbeeSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The queen: hive registry, scheduling, OpenAI-compatible and native task APIs.
        .target(
            name: "RbeeQueen",
            dependencies: [
                "RbeeAPI", "RbeeHTTP",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "queen-rbee",
            dependencies: [
                "RbeeQueen", "RbeeAPI", "RbeeHTTP", "CRbeeSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The CLI: commands, progress display, starting and stopping a local queen.
        .target(
            name: "RbeeKeeper",
            dependencies: [
                "RbeeAPI", "RbeeHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "rbee", dependencies: ["RbeeKeeper"]),
        // Test helpers: programs of this package as real child processes. Not in any product.
        .target(
            name: "RbeeTestSupport",
            dependencies: [
                "RbeeAPI", "RbeeHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "RbeeAPITests", dependencies: ["RbeeAPI"]),
        .testTarget(name: "RbeeGGUFTests", dependencies: ["RbeeGGUF", "RbeeTestSupport"]),
        .testTarget(name: "RbeeInferenceTests", dependencies: ["RbeeInference", "RbeeTestSupport"], swiftSettings: llamaSwiftSettings),
        .testTarget(
            name: "RbeeWorkerTests",
            dependencies: [
                "RbeeWorker", "RbeeAPI", "RbeeHTTP", "RbeeTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: llamaSwiftSettings
        ),
        .testTarget(
            name: "RbeeHiveTests",
            dependencies: [
                "RbeeHive", "RbeeAPI", "RbeeHTTP", "RbeeGGUF", "RbeeWorker", "RbeeInference", "RbeeTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: llamaSwiftSettings
        ),
        .testTarget(
            name: "RbeeQueenTests",
            dependencies: [
                "RbeeQueen", "RbeeHive", "RbeeWorker", "RbeeInference", "RbeeAPI", "RbeeGGUF", "RbeeHTTP", "RbeeTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: llamaSwiftSettings
        ),
        .testTarget(
            name: "RbeeKeeperTests",
            dependencies: [
                "RbeeKeeper", "RbeeAPI", "RbeeTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]
        ),
    ],
    cxxLanguageStandard: .cxx17
)
