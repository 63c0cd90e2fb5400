import Foundation
import Testing

@testable import RbeeGGUF

/// The real default model (see `scripts/fetch-model.sh`); RBEE_TEST_MODEL overrides it.
let modelPath: String = ProcessInfo.processInfo.environment["RBEE_TEST_MODEL"]
    ?? NSHomeDirectory() + "/.cache/rbee/models/gemma-3-270m-q4_k_m.gguf"

@Suite struct GGUFFileTests {
    @Test func readsTheFactsOfTheRealModel() throws {
        let file = try GGUFFile(path: modelPath)
        #expect(file.architecture == "gemma3")
        #expect(file.blockCount == 18)
        #expect(file.contextLength == 32768)
        #expect(file.quantization == "Q4_K_M")
        #expect(file.fileSize == 253_113_024)
        #expect((200_000_000...300_000_000).contains(file.parameterCount ?? 0))
    }

    @Test func rejectsAFileThatIsNotGGUF() {
        #expect(throws: GGUFError.self) { try GGUFFile(data: Data("hello world, not a model".utf8)) }
    }

    @Test func rejectsATruncatedCopyOfTheRealModel() throws {
        let handle = try #require(FileHandle(forReadingAtPath: modelPath))
        let head = handle.readData(ofLength: 40 << 20)
        do {
            _ = try GGUFFile(data: head)
            Issue.record("a truncated file was accepted")
        } catch {
            #expect(error.message.contains("truncated"))
        }
    }

    @Test func rejectsAHeaderCutShort() throws {
        let handle = try #require(FileHandle(forReadingAtPath: modelPath))
        let head = handle.readData(ofLength: 1000)
        #expect(throws: GGUFError.self) { try GGUFFile(data: head) }
    }
}
