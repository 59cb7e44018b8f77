import Foundation
import RESP
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// What a misbehaving client can cost the ambassador: never more than it would cost Redis.
extension Integration {
@Suite(.serialized) struct LimitTests {
    static func rssBytes(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Int(line.split(whereSeparator: \.isWhitespace)[1]) else { return 0 }
        return kib * 1024
    }

    /// A subscriber that never reads while 400 MB are published. Direct, Redis cuts it off at
    /// its `client-output-buffer-limit pubsub` (32 MB by default) and PUBLISH then counts no
    /// receiver. Through the ambassador the same happens — Redis cuts off the ambassador's
    /// connection, and the ambassador the client — and the ambassador's memory stays bounded
    /// (it used to buffer all of it: 25 → 420 MB for 6,000 × 64 KiB).
    @Test func aSubscriberThatNeverReadsIsCutOffAsByRedisAndCostsTheAmbassadorLittle() throws {
        let master = try RedisServer()
        defer { master.stop() }
        let port = try RedisServer.freePort()
        let ambassador = try AmbassadorProcess(arguments: ["--listen", "127.0.0.1:\(port)", "--master", "127.0.0.1:\(master.port)"])
        defer { ambassador.stop() }
        try #require(ambassador.answers(on: port), "\(ambassador.logText)")
        let pid = ambassador.process.processIdentifier
        let baseline = Self.rssBytes(pid)
        let message = String(repeating: "m", count: 64 * 1024)
        var peak = 0
        for (name, target) in [("direct", master.port), ("ambassador", port)] {
            let subscriber = try BlockingClient(port: target, timeout: 10)
            #expect(try subscriber.command(["SUBSCRIBE", "news"]) == .array([.bulk("subscribe"), .bulk("news"), .integer(1)]), "\(name)")
            // From here on the subscriber reads nothing.
            let publisher = try master.client()
            var receiversAtTheEnd: RESPValue = .null
            for i in 0..<6_400 {  // 400 MB
                receiversAtTheEnd = try publisher.command(["PUBLISH", "news", message])
                if name == "ambassador" && i % 64 == 0 { peak = max(peak, Self.rssBytes(pid)) }
            }
            #expect(receiversAtTheEnd == .integer(0), "\(name): Redis cut the subscriber off (\(receiversAtTheEnd))")
            // The subscriber finds its connection closed once it reads what was buffered for it.
            #expect(subscriber.isClosedByPeer(), "\(name)")
        }
        #expect(peak > 0 && peak - baseline < 48 << 20,
                "ambassador RSS \(baseline >> 20) MB before, \(peak >> 20) MB at most while 400 MB were published")
        // And it goes on serving.
        #expect(try BlockingClient(port: port).command(["PING"]) == .simple("PONG"))
        print("relay limit: ambassador RSS \(baseline >> 10) KiB before, peak \(peak >> 10) KiB while 400 MB were published to a subscriber that never read")
    }
}
}
