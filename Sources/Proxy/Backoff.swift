/// The pause before retry `attempt` (0 first): `base` doubled per attempt up to `cap`, then a
/// random 50-100 % of that ("equal jitter"), so many ambassadors that lost the same node at the
/// same moment do not come back to it in step. Backend reconnects and the health probes of a
/// node that is down both use it.
public enum Backoff {
    public static func delay(attempt: Int, base: Double, cap: Double, random: Double = .random(in: 0.5...1)) -> Double {
        let doubled = base * Double(1 << min(max(attempt, 0), 20))
        return min(max(cap, base), doubled) * random
    }
}
