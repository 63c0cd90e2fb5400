/// Versions every `/health` reports; a peer with another `apiVersion` is refused (`VERSION_MISMATCH`).
public enum RbeeVersion {
    public static let version = "0.1.0"
    public static let apiVersion = 1
}
