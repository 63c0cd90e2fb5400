import Foundation
import Logging
import RbeeHive
import RbeeInference
import RbeeQueen
import RbeeWorker
import RbeeTestSupport
import Testing

/// Each daemon's document in `docs/openapi/` lists every route that daemon registers, and nothing
/// else (`scripts/api-conformance.sh` fuzzes each daemon against its document).
@Suite struct OpenAPIDocumentTests {
    /// "METHOD /path" pairs from the `paths` of `docs/openapi/<name>.yaml`.
    static func documentedRoutes(_ name: String) throws -> Set<String> {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: repository.appendingPathComponent("docs/openapi/\(name).yaml"), encoding: .utf8)
        var routes: Set<String> = []
        var inPaths = false
        var path: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "paths:" {
                inPaths = true
            } else if inPaths, let first = line.first, first != " " {
                inPaths = false
            } else if inPaths, line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
            } else if inPaths, let path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":") {
                let method = line.trimmingCharacters(in: .whitespaces).dropLast().uppercased()
                if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(method) { routes.insert("\(method) \(path)") }
            }
        }
        return routes
    }

    static func normalized(_ description: String) -> String {
        let parts = description.split(separator: " ", maxSplits: 1)
        let path = parts.count > 1 ? String(parts[1]) : ""
        return "\(parts[0]) \(path.hasPrefix("/") ? path : "/" + path)"
    }

    @Test func everyRouteIsDocumented() async throws {
        var logger = Logger(label: "openapi-test")
        logger.logLevel = .critical
        let worker = WorkerService(configuration: WorkerConfiguration(engine: EngineConfiguration(modelPath: modelPath)), logger: logger)
        let hive = try await HiveService(configuration: HiveConfiguration(home: try temporaryHome()), logger: logger)
        let queen = try QueenService(configuration: QueenConfiguration(home: try temporaryHome()), logger: logger)
        let daemons = [
            ("worker", worker.makeRouter().routes.map(\.description)), ("hive", hive.makeRouter().routes.map(\.description)),
            ("queen", queen.makeRouter().routes.map(\.description)),
        ]
        for (name, routes) in daemons {
            let registered = Set(routes.map(Self.normalized))
            let documented = try Self.documentedRoutes(name)
            #expect(registered.count >= 7 && documented.count >= 7, "\(name): the comparison must not pass on empty sets")
            #expect(registered.subtracting(documented).isEmpty, "\(name): registered but not documented: \(registered.subtracting(documented).sorted())")
            #expect(documented.subtracting(registered).isEmpty, "\(name): documented but not registered: \(documented.subtracting(registered).sorted())")
        }
    }
}
