/// Shared input rules of SPEC §5.
public enum Validation {
    /// Ids and names: `[A-Za-z0-9._-]{1,64}`.
    public static func isValidID(_ value: String) -> Bool {
        guard (1...64).contains(value.utf8.count) else { return false }
        return value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2E || byte == 0x5F || byte == 0x2D
        }
    }

    /// Hive names: DNS names (`ws-1.home.arpa`): labels of 1-63 letters, digits and '-', not
    /// starting or ending with '-', joined by dots, 64 characters at most.
    public static func isHiveName(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count) else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                && label.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D }
        }
    }

    public static let hiveNameRule = "a DNS name: labels of letters, digits and '-' joined by dots, 64 characters at most"

    /// Default cap on request bodies: enough for a 32k-token prompt.
    public static let maxBodyBytes = 4 * 1024 * 1024
}
