import EventLoop

/// The CPUs this process may really use, for `workers: auto`. `ProcessInfo.activeProcessorCount`
/// reports the machine's cores on Linux, ignoring both `taskset`/cpuset affinity and a container's
/// CPU limit (measured here: 2 under `taskset -c 0`, and 2 in a 0.5-CPU cgroup that is not the
/// namespace's root: it reads only the root cgroup's quota). Started that way in a Pod on a
/// 32-core node with `limits.cpu: 1`, `auto` could run 31 loops on one CPU of quota.
public struct CPUBudget: Equatable, Sendable, CustomStringConvertible {
    /// CPUs in the affinity mask (`Cpus_allowed_list` of /proc/self/status).
    public var allowed: Int
    /// The cgroup CPU quota in CPUs (`cpu.max`, or v1 `cpu.cfs_quota_us / cpu.cfs_period_us`);
    /// nil when there is none.
    public var quota: Double?

    public init(allowed: Int, quota: Double? = nil) {
        self.allowed = allowed
        self.quota = quota
    }

    public var description: String {
        "\(allowed) CPU(s) allowed" + (quota.map { ", cgroup quota \($0) CPU" } ?? ", no cgroup quota")
    }

    /// This process's budget, read from /proc and /sys/fs/cgroup; `fallback` cores when the
    /// affinity list cannot be read.
    public static func current(fallback: Int) -> CPUBudget {
        let status = read("/proc/self/status") ?? ""
        let list = status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }
            .map { String($0.dropFirst("Cpus_allowed_list:".count)) }
        let allowed = list.flatMap(cpuCount) ?? fallback
        return CPUBudget(allowed: max(1, allowed), quota: cgroupQuota(membership: read("/proc/self/cgroup") ?? ""))
    }

    /// Counts a CPU list such as `0-3,8,10-11` (7). nil when it is not one.
    public static func cpuCount(_ list: String) -> Int? {
        var count = 0
        for part in list.trimmed.split(separator: ",") {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard let low = Int(bounds[0]) else { return nil }
            if bounds.count == 1 {
                count += 1
            } else {
                guard bounds.count == 2, let high = Int(bounds[1]), high >= low else { return nil }
                count += high - low + 1
            }
        }
        return count > 0 ? count : nil
    }

    /// cgroup v2 `cpu.max`: `max 100000` (no limit) or `150000 100000` (1.5 CPUs).
    public static func quota(cpuMax text: String) -> Double? {
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard fields.count == 2, let quota = Double(fields[0]), let period = Double(fields[1]), quota > 0, period > 0 else { return nil }
        return quota / period
    }

    /// cgroup v1 `cpu.cfs_quota_us` (-1: no limit) and `cpu.cfs_period_us`.
    public static func quota(cfsQuota: String, cfsPeriod: String) -> Double? {
        guard let quota = Double(cfsQuota.trimmed),
              let period = Double(cfsPeriod.trimmed), quota > 0, period > 0 else { return nil }
        return quota / period
    }

    /// The quota of the cgroup named in `membership` (/proc/self/cgroup), v2 or v1. In a container
    /// the cgroup namespace usually shows the own cgroup as `/`, so the root files are tried too.
    static func cgroupQuota(membership: String) -> Double? {
        for line in membership.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = fields[2] == "/" ? "" : String(fields[2])
            if fields[0] == "0" && fields[1].isEmpty {
                for directory in ["/sys/fs/cgroup" + path, "/sys/fs/cgroup"] {  // own cgroup first
                    if let text = read(directory + "/cpu.max") { return quota(cpuMax: text) }
                }
            } else if fields[1].split(separator: ",").contains("cpu") {
                for mount in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
                    for directory in [mount + path, mount] {
                        if let cfsQuota = read(directory + "/cpu.cfs_quota_us"), let cfsPeriod = read(directory + "/cpu.cfs_period_us") {
                            return quota(cfsQuota: cfsQuota, cfsPeriod: cfsPeriod)
                        }
                    }
                }
            }
        }
        return nil
    }

    private static func read(_ path: String) -> String? {
        System.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }
}

extension StringProtocol {
    /// Without leading and trailing white space (what Foundation's trimmingCharacters did here).
    public var trimmed: Substring {
        let text = Substring(self)
        guard let first = text.firstIndex(where: { !$0.isWhitespace }),
              let last = text.lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return text[first...last]
    }
}
