/// A model reference (SPEC §3): `hf:ORG/REPO[@REV]:FILE.gguf`, `https://…`, `file:/abs/path.gguf`,
/// or a catalog id. Parsing validates: ASCII, at most 512 characters, no `..`, no shell
/// metacharacters.
public enum ModelReference: Sendable, Equatable, CustomStringConvertible {
    case huggingFace(organization: String, repository: String, revision: String?, file: String)
    case url(String)
    case file(path: String)
    case catalogID(String)

    public static let maxLength = 512
    static let forms = "hf:ORG/REPO[@REV]:FILE.gguf, https://HOST/PATH.gguf, file:/ABSOLUTE/PATH.gguf, or a catalog id"

    public init(parsing raw: String) throws(RbeeError) {
        func invalid(_ reason: String) -> RbeeError {
            RbeeError(
                .invalidModelRef, "invalid model reference: \(reason); accepted forms: \(Self.forms)",
                details: ["model_ref": .string(String(raw.prefix(Self.maxLength))), "accepted_forms": .string(Self.forms)])
        }
        guard !raw.isEmpty else { throw invalid("it is empty") }
        guard raw.utf8.count <= Self.maxLength else { throw invalid("longer than \(Self.maxLength) characters") }
        guard raw.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw invalid("only printable ASCII without spaces is accepted") }
        let forbidden = Set(";|&$`<>(){}[]!*?'\"\\^~,")
        if let bad = raw.first(where: { forbidden.contains($0) }) { throw invalid("the character \(bad) is not allowed") }
        if raw.contains("..") { throw invalid("'..' is not allowed") }

        if raw.hasPrefix("hf:") {
            let body = raw.dropFirst(3)
            guard let colon = body.lastIndex(of: ":") else { throw invalid("an hf: reference needs :FILE.gguf") }
            let repoPart = body[..<colon]
            let file = String(body[body.index(after: colon)...])
            let (repoPath, revision): (Substring, String?) =
                if let at = repoPart.firstIndex(of: "@") { (repoPart[..<at], String(repoPart[repoPart.index(after: at)...])) } else {
                    (repoPart, nil)
                }
            let parts = repoPath.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ Self.isSegment($0) }) else { throw invalid("an hf: reference needs ORG/REPO") }
            if let revision, !Self.isSegment(Substring(revision)) { throw invalid("the revision must match [A-Za-z0-9._-]+") }
            guard file.hasSuffix(".gguf"), file.split(separator: "/").allSatisfy({ Self.isSegment($0) }) else {
                throw invalid("the file must be a relative path ending in .gguf")
            }
            self = .huggingFace(organization: String(parts[0]), repository: String(parts[1]), revision: revision, file: file)
        } else if raw.hasPrefix("https://") || raw.hasPrefix("http://") {
            let afterScheme = raw.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
            guard afterScheme.count == 4, !afterScheme[2].isEmpty, !afterScheme[3].isEmpty else {
                throw invalid("a URL needs a host and a path")
            }
            self = .url(raw)
        } else if raw.hasPrefix("file:") {
            let path = String(raw.dropFirst(5))
            guard path.hasPrefix("/") else { throw invalid("a file: reference needs an absolute path") }
            self = .file(path: path)
        } else if Validation.isValidID(raw) {
            self = .catalogID(raw)
        } else {
            throw invalid("not a known form")
        }
    }

    /// `[A-Za-z0-9._-]+`.
    static func isSegment(_ value: Substring) -> Bool {
        !value.isEmpty && value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2E || byte == 0x5F || byte == 0x2D
        }
    }

    public var description: String {
        switch self {
        case .huggingFace(let organization, let repository, let revision, let file):
            "hf:\(organization)/\(repository)\(revision.map { "@" + $0 } ?? ""):\(file)"
        case .url(let url): url
        case .file(let path): "file:" + path
        case .catalogID(let id): id
        }
    }

    /// The file name the model is stored under.
    public var fileName: String? {
        switch self {
        case .huggingFace(_, _, _, let file): file.split(separator: "/").last.map(String.init)
        case .url(let url): url.split(separator: "/").last.map { String($0.split(separator: "?").first ?? $0) }
        case .file(let path): path.split(separator: "/").last.map(String.init)
        case .catalogID: nil
        }
    }

    /// A catalog id derived from the file name: `[A-Za-z0-9._-]{1,64}`.
    public var derivedID: String {
        if case .catalogID(let id) = self { return id }
        var stem = fileName ?? "model"
        if stem.hasSuffix(".gguf") { stem.removeLast(5) }
        let cleaned = String(stem.map { Self.isSegment(Substring(String($0))) ? $0 : "-" }.prefix(64))
        return cleaned.isEmpty ? "model" : cleaned
    }
}
