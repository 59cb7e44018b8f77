import Testing
@testable import Proxy

/// `backend_up` series: a backend the topology no longer lists keeps its series only while it
/// has connections, even when its connection completes after it left.
@Suite struct MetricsSeriesTests {
    private func series(_ metrics: Metrics) -> String {
        String(decoding: metrics.exposition(), as: UTF8.self).split(separator: "\n")
            .filter { $0.hasPrefix("redis_ambassador_backend_up{") }.joined(separator: "\n")
    }

    @Test func aLateConnectToABackendThatLeftLeavesNoSeries() {
        let metrics = Metrics()
        metrics.configure(master: "10.0.0.1:6379", replicas: [])
        // Discovery names the real master; the placeholder's connect completes only afterwards.
        metrics.configure(master: "10.0.0.2:6379", replicas: [])
        metrics.backendConnection("10.0.0.1:6379", role: "master", open: 1, up: 1)
        #expect(series(metrics).contains("backend=\"10.0.0.1:6379\""), "shown while connected")
        metrics.backendConnection("10.0.0.1:6379", role: "master", open: -1, up: -1)
        #expect(!series(metrics).contains("10.0.0.1:6379"), "\(series(metrics))")
        #expect(series(metrics).contains("backend=\"10.0.0.2:6379\""))
        // A configured backend keeps its series (at 0) when its connections close.
        metrics.backendConnection("10.0.0.2:6379", role: "master", open: 1, up: 1)
        metrics.backendConnection("10.0.0.2:6379", role: "master", open: -1, up: -1)
        #expect(series(metrics).contains("backend=\"10.0.0.2:6379\""))
    }
}
