import Foundation
import RbeeTestSupport
import Testing

@testable import RbeeGGUF


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
