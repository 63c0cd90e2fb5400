import Foundation
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

    /// `RBEE_API_TOKEN`, else the first line of `tokenFile`, which must not be readable by group
    /// or others (0600). No token at all gives nil.
    public static func load(environment: [String: String] = ProcessInfo.processInfo.environment, tokenFile: String?) throws(RbeeError)
        -> APIToken?
    {
        if let value = environment["RBEE_API_TOKEN"], !value.isEmpty { return APIToken(value) }
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
        guard let contents = try? String(contentsOfFile: tokenFile, encoding: .utf8),
            let line = contents.split(whereSeparator: \.isNewline).first, !line.isEmpty
        else {
            throw RbeeError(.invalidRequest, "token file \(tokenFile) is empty")
        }
        return APIToken(String(line))
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
