import Foundation
import ProbattnCore
import Testing

/// How the cores a process may use are read: the affinity list of /proc/PID/status and the cgroup's CPU quota.
@Suite struct UsableCoresTests {
    @Test func theAffinityListIsCounted() {
        let status = "Name:\tprobattnd\nCpus_allowed:\tf0b\nCpus_allowed_list:\t0-3,8,10-11\nMems_allowed_list:\t0\n"
        #expect(UsableCores.allowedCPUs(status: status) == 7)
        #expect(UsableCores.allowedCPUs(status: "Cpus_allowed_list:\t0\n") == 1)
        #expect(UsableCores.allowedCPUs(status: "Name:\tx\n") == nil)
        #expect(UsableCores.allowedCPUs(status: "Cpus_allowed_list:\t3-1\n") == nil)
        #expect(UsableCores.allowedCPUs(status: "Cpus_allowed_list:\t0-x\n") == nil)
    }

    @Test func aQuotaIsRoundedUpToWholeCores() {
        #expect(UsableCores.cores(quota: 150_000, period: 100_000) == 2)
        #expect(UsableCores.cores(quota: 100_000, period: 100_000) == 1)
        #expect(UsableCores.cores(quota: 10_000, period: 100_000) == 1)
        #expect(UsableCores.cores(quota: -1, period: 100_000) == nil)
    }

    @Test func theQuotaComesFromTheProcesssOwnCgroup() {
        func reader(_ files: [String: String]) -> (String) -> String? { { files[$0] } }
        // cgroup v2: the unified hierarchy's line names the folder of cpu.max.
        let v2 = "0::/system.slice/probattnd.service\n"
        #expect(UsableCores.quotaCores(cgroups: v2, read: reader([
            "/sys/fs/cgroup/system.slice/probattnd.service/cpu.max": "250000 100000\n"])) == 3)
        #expect(UsableCores.quotaCores(cgroups: v2, read: reader([
            "/sys/fs/cgroup/system.slice/probattnd.service/cpu.max": "max 100000\n"])) == nil)
        // cgroup v1: the cpu controller's folder, or the mount's root inside a container.
        let v1 = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n"
        #expect(UsableCores.quotaCores(cgroups: v1, read: reader([
            "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
            "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"])) == 1)
        #expect(UsableCores.quotaCores(cgroups: v1, read: reader([
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "400000\n",
            "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"])) == 4)
        #expect(UsableCores.quotaCores(cgroups: v1, read: reader([
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"])) == nil)
        #expect(UsableCores.quotaCores(cgroups: v1, read: reader([:])) == nil)
    }

    /// This process's own count agrees with its affinity list and Foundation's processor count bounds it.
    @Test func thisProcessCountsItsAllowedCores() throws {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let allowed = try #require(UsableCores.allowedCPUs(status: status))
        #expect(UsableCores.count() >= 1)
        #expect(UsableCores.count() <= allowed)
        #expect(allowed <= ProcessInfo.processInfo.activeProcessorCount)
    }
}
