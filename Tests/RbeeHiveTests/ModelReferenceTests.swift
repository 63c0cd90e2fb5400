import RbeeTestSupport
import Testing

@testable import RbeeAPI

@Suite struct ModelReferenceTests {
    @Test func acceptsTheFourForms() throws {
        #expect(
            try ModelReference(parsing: "hf:google/gemma-3-270m@v1:gemma-3-270m-q4_k_m.gguf")
                == .huggingFace(organization: "google", repository: "gemma-3-270m", revision: "v1", file: "gemma-3-270m-q4_k_m.gguf"))
        #expect(try ModelReference(parsing: "https://example.org/m/model.gguf") == .url("https://example.org/m/model.gguf"))
        #expect(try ModelReference(parsing: "file:/models/a.gguf") == .file(path: "/models/a.gguf"))
        #expect(try ModelReference(parsing: "gemma-3-270m-q4_k_m") == .catalogID("gemma-3-270m-q4_k_m"))
        #expect(try ModelReference(parsing: "hf:org/repo:sub/dir/x.gguf").derivedID == "x")
    }

    @Test(arguments: [
        "hf:org/../etc:passwd.gguf", "file:/models/../../etc/passwd", "hf:org/repo:model.gguf;rm -rf /", "https://x/$(id).gguf",
        "hf:org/repo:model.bin", "file:relative.gguf", "", "hf:org:model.gguf", "white space", "ünïcode",
        String(repeating: "a", count: 513),
    ])
    func refusesBadReferencesWithTheAcceptedForms(raw: String) {
        do {
            _ = try ModelReference(parsing: raw)
            Issue.record("accepted \(raw)")
        } catch {
            #expect(error.code == .invalidModelRef)
            #expect(error.message.contains("hf:ORG/REPO[@REV]:FILE.gguf"))
        }
    }
}
