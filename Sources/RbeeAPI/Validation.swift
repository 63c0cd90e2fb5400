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

    /// Default cap on request bodies: enough for a 32k-token prompt.
    public static let maxBodyBytes = 4 * 1024 * 1024
}
