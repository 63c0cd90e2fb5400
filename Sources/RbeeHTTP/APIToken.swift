import Foundation
import Logging
import RbeeAPI

/// The bearer token that guards every route but `/health` (SPEC §4).
public struct APIToken: Sendable {
    let bytes: [UInt8]
    /// The token itself, for outgoing `Authorization` headers only; never log it.
    public let value: String

    public init(_ value: String) {
        self.value = value
        self.bytes = Array(value.utf8)
    }

    /// Compares in time independent of where the inputs differ.
    public func matches(_ candidate: String) -> Bool {
        let other = Array(candidate.utf8)
        var difference = UInt8(truncatingIfNeeded: bytes.count ^ other.count)
        for index in 0..<max(bytes.count, 1) {
            let left = index < bytes.count ? bytes[index] : 0
            let right = index < other.count ? other[index] : 0
            difference |= left ^ right
        }
        return difference == 0 && !bytes.isEmpty
    }

    /// A short, non-reversible fingerprint for logs: the token itself is never logged.
    public var fingerprint: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(String(hash, radix: 16).suffix(8))
    }

    /// `RBEE_API_TOKEN`, else the token in `tokenFile`, which must not be readable by group or
    /// others (0600) and must hold the token alone: one line (a final newline allowed), no
    /// whitespace. Anything else refuses to start, saying why without showing the file. No token
    /// at all gives nil.
    public static func load(environment: [String: String] = ProcessInfo.processInfo.environment, tokenFile: String?) throws(RbeeError)
        -> APIToken?
    {
        if let value = environment["RBEE_API_TOKEN"], !value.isEmpty {
            try check(value, source: "RBEE_API_TOKEN")
            return APIToken(value)
        }
        guard let tokenFile else { return nil }
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: tokenFile)
        } catch {
            throw RbeeError(.invalidRequest, "cannot read token file \(tokenFile)")
        }
        let permissions = (attributes[.posixPermissions] as? Int) ?? 0
        guard permissions & 0o077 == 0 else {
            throw RbeeError(.invalidRequest, "token file \(tokenFile) must not be readable by group or others (chmod 600)")
        }
        guard let contents = try? String(contentsOfFile: tokenFile, encoding: .utf8) else {
            throw RbeeError(.invalidRequest, "token file \(tokenFile) is not readable text")
        }
        var token = Substring(contents)
        if token.hasSuffix("\r\n") { token = token.dropLast(2) } else if token.hasSuffix("\n") { token = token.dropLast() }
        try check(String(token), source: "token file \(tokenFile)")
        return APIToken(String(token))
    }

    /// A token is one run of printable characters: what a client can send in a header.
    static func check(_ token: String, source: String) throws(RbeeError) {
        if token.allSatisfy(\.isWhitespace) { throw RbeeError(.invalidRequest, "\(source) is empty or only whitespace") }
        let lines = token.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).count
        if lines > 1 { throw RbeeError(.invalidRequest, "\(source) has \(lines) lines; it must hold the token alone, on one line") }
        if token.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            throw RbeeError(.invalidRequest, "\(source) holds whitespace or control characters; the token must be one word")
        }
    }

    /// Logs which token guards the daemon (its fingerprint, never the token), or that auth is off.
    public static func logPolicy(_ token: APIToken?, host: String, logger: Logger) {
        if let token {
            logger.info("API token required", metadata: ["token_fingerprint": "\(token.fingerprint)"])
        } else {
            logger.info("auth is off: no API token, so only this machine may connect", metadata: ["host": "\(host)"])
        }
    }

    /// A daemon bound to a non-loopback address without a token refuses to start.
    public static func checkBinding(host: String, token: APIToken?) throws(RbeeError) {
        let loopback = host == "localhost" || host == "::1" || host.hasPrefix("127.")
        if !loopback && token == nil {
            throw RbeeError(
                .invalidRequest, "refusing to listen on \(host) without an API token: set RBEE_API_TOKEN or --token-file, or bind to 127.0.0.1")
        }
    }
}
