import ProbattnConfig
import ProbattnKeys

/// What `probattnd validate` reports about `security`: reads the server key and every client key as the daemon
/// would at start (and checks that libzmq has CURVE). Throws the first problem as a one-line `KeyError`.
public enum SecurityCheck {
    /// A one-line summary: "CURVE, N client keys" or "open".
    public static func check(_ security: DaemonConfig.Security) throws -> String {
        guard let access = try AccessControl.load(security) else {
            return security.allowInsecure ? "open (allow_insecure)" : "open (local endpoints only)"
        }
        let roles = Dictionary(grouping: access.current.entries, by: { $0.principal.role.rawValue })
            .map { "\($0.value.count) \($0.key)" }.sorted().joined(separator: ", ")
        return "CURVE, \(access.current.entries.count) client keys\(roles.isEmpty ? "" : " (\(roles))")"
    }
}
