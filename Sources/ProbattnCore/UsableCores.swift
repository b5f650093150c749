import Foundation

/// The cores this process may use, which size the daemon's and `probattn eval`'s core pools (read once at start):
/// the CPUs of its affinity mask (`taskset`, systemd's `CPUAffinity=`, a container's cpuset; the
/// `Cpus_allowed_list` of /proc/self/status), capped by the CPU quota of its cgroup (systemd's `CPUQuota=`,
/// `docker run --cpus`; cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up; at least 1.
/// Where none of these can be read, the processors Foundation counts (`activeProcessorCount`, which ignores both).
public enum UsableCores {
    /// The usable cores of this process (see the type's comment).
    public static func count() -> Int {
        let online = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let allowed = status.flatMap(allowedCPUs(status:)) ?? online
        let cgroups = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        let quota = quotaCores(cgroups: cgroups) { path in try? String(contentsOfFile: path, encoding: .utf8) }
        return max(1, min(allowed, quota ?? allowed))
    }

    /// The number of CPUs in the `Cpus_allowed_list:` line of a /proc/PID/status text ("0-3,8,10-11" → 7); nil
    /// when the line is missing or malformed.
    public static func allowedCPUs(status: String) -> Int? {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else {
            return nil
        }
        let list = line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces)
        var count = 0
        for part in list.split(separator: ",") {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            switch bounds.count {
            case 1:
                guard bounds[0] != nil else { return nil }
                count += 1
            case 2:
                guard let low = bounds[0], let high = bounds[1], high >= low else { return nil }
                count += high - low + 1
            default:
                return nil
            }
        }
        return count > 0 ? count : nil
    }

    /// The cores of a CPU quota, rounded up: `quota` microseconds of CPU per `period` (1.5 cores → 2); nil for no
    /// quota (a non-positive quota or period).
    public static func cores(quota: Int, period: Int) -> Int? {
        guard quota > 0, period > 0 else { return nil }
        return max(1, (quota + period - 1) / period)
    }

    /// The cores of the quota of the cgroup that a /proc/PID/cgroup text names, read through `read` (a file's text,
    /// nil when it cannot be read): cgroup v2 (`0::PATH` → /sys/fs/cgroup/PATH/cpu.max, "max 100000" = none) first,
    /// else v1 (the `cpu` controller's line → its `cpu.cfs_quota_us`, −1 = none, and `cpu.cfs_period_us`, in the
    /// cgroup's folder or at the mount's root). Nil when
    /// there is no quota or it cannot be read.
    public static func quotaCores(cgroups: String, read: (String) -> String?) -> Int? {
        for line in cgroups.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = fields[2] == "/" ? "" : String(fields[2])
            if fields[0] == "0", fields[1].isEmpty {
                guard let text = read("/sys/fs/cgroup\(path)/cpu.max") else { continue }
                let values = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
                guard values.count == 2, let quota = Int(values[0]), let period = Int(values[1]) else { continue }
                return cores(quota: quota, period: period)
            }
            let controllers = fields[1].split(separator: ",")
            if controllers.contains("cpu") {
                // The controller's mount, under its own name or as `cpu`; the cgroup's folder in it, or the mount's
                // root (a container sees its own cgroup there while /proc names the host's path).
                for mount in ["/sys/fs/cgroup/\(fields[1])", "/sys/fs/cgroup/cpu"] {
                    for folder in [mount + path, mount] {
                        func number(_ file: String) -> Int? {
                            read("\(folder)/\(file)").flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                        }
                        if let quota = number("cpu.cfs_quota_us"), let period = number("cpu.cfs_period_us") {
                            return cores(quota: quota, period: period)
                        }
                    }
                }
            }
        }
        return nil
    }
}
