@testable import Control
import Config
import EventLoop
import Testing

/// Who may use the admin endpoint: probes and metrics for anyone who reaches the port; `/config`
/// and `/reload` for the bearer token, or (without one) loopback peers.
@Suite struct AdminAccessTests {
    @Test func probesAreOpenAndControlNeedsTheTokenOrLoopback() {
        for path in ["/healthz", "/readyz", "/metrics", "/nope"] {
            for peer in ["127.0.0.1", "10.1.2.3"] {
                #expect(AdminEndpoint.access(path: path, authorization: nil, peer: peer, token: nil) == .allowed, "\(path) \(peer)")
                #expect(AdminEndpoint.access(path: path, authorization: nil, peer: peer, token: "s3cret") == .allowed, "\(path) \(peer)")
            }
        }
        for path in ["/config", "/reload"] {
            // No token configured: loopback only (IPv4, IPv6, IPv4-mapped).
            for peer in ["127.0.0.1", "127.5.6.7", "::1", "::ffff:127.0.0.1"] {
                #expect(AdminEndpoint.access(path: path, authorization: nil, peer: peer, token: nil) == .allowed, "\(path) \(peer)")
            }
            for peer in ["10.1.2.3", "::ffff:10.1.2.3", "fe80::1", ""] {
                guard case .forbidden = AdminEndpoint.access(path: path, authorization: "Bearer x", peer: peer, token: nil) else {
                    Issue.record("\(path) from \(peer) without a token configured")
                    continue
                }
            }
            // A token configured: it, from anywhere, loopback included; nothing else.
            for peer in ["127.0.0.1", "10.1.2.3"] {
                #expect(AdminEndpoint.access(path: path, authorization: "Bearer s3cret", peer: peer, token: "s3cret") == .allowed)
                for wrong in [nil, "", "Bearer", "Bearer ", "Bearer s3cre", "Bearer s3cret2", "bearer s3cret", "Basic s3cret", "Bearer S3cret"] {
                    guard case .unauthorized = AdminEndpoint.access(path: path, authorization: wrong, peer: peer, token: "s3cret") else {
                        Issue.record("\(path) from \(peer) with \(wrong ?? "no header")")
                        continue
                    }
                }
            }
        }
        #expect(Secret.equal(Array("abc".utf8), Array("abc".utf8)))
        #expect(!Secret.equal(Array("abc".utf8), Array("abd".utf8)))
        #expect(!Secret.equal(Array("abc".utf8), Array("abcd".utf8)))
        #expect(!Secret.equal([], Array("a".utf8)))
    }
}
