import Config
import EventLoop
import Foundation
import Testing
import TestSupport

/// `backend_tls`, `sentinel_tls` and `listen_tls`: what they accept, what they refuse (with the
/// key named), and that a renewed file is a changed config.
@Suite struct TLSConfigTests {
    static let base = "listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\n"

    func parse(_ yaml: String) throws(ConfigError) -> AmbassadorConfig {
        try ConfigLoader.parse(Self.base + yaml)
    }

    func error(_ yaml: String) -> ConfigError? {
        do { _ = try parse(yaml); return nil } catch { return error }
    }

    @Test func acceptsEachShape() throws {
        let certificates = try TestCertificates.make()
        #expect(try parse("").backendTLS == nil)
        #expect(try parse("backend_tls: false\n").backendTLS == nil)
        let system = try #require(try parse("backend_tls: true\n").backendTLS)
        #expect(system.verify == .full && system.caFile == nil && system.minVersion == .tls12)
        let full = try parse("""
            backend_tls:
              ca_file: \(certificates.ca)
              cert_file: \(certificates.client.cert)
              key_file: \(certificates.client.key)
              server_name: redis.internal
              verify: ca
              min_version: "1.3"
            sentinel_tls: {ca_file: \(certificates.otherCA)}
            listen_tls: {cert_file: \(certificates.server.cert), key_file: \(certificates.server.key), ca_file: \(certificates.ca)}
            """)
        let backend = try #require(full.backendTLS)
        #expect(backend.serverName == "redis.internal" && backend.verify == .ca && backend.minVersion == .tls13)
        #expect(backend.files == [certificates.ca, certificates.client.cert, certificates.client.key])
        #expect(full.sentinelTLS?.caFile == certificates.otherCA)
        #expect(full.listenTLS?.context.role == .server)
        #expect(full.listenTLS?.certificateExpiry ?? 0 > Int(Date().timeIntervalSince1970))
        // Every file is watched, and /config shows paths only.
        #expect(Set(full.watchedFiles).isSuperset(of: [certificates.ca, certificates.otherCA, certificates.server.key]))
        let shown = "\(full.redacted["backend_tls"]!)"
        #expect(shown.contains(certificates.ca) && !shown.contains("BEGIN"))
    }

    @Test func refusesWhatCannotWork() throws {
        let certificates = try TestCertificates.make()
        let notPEM = FileManager.default.temporaryDirectory.appendingPathComponent("ra-not-pem-\(UUID().uuidString)").path
        try "hello\n".write(toFile: notPEM, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: notPEM) }
        let cases: [(String, String, String)] = [
            ("backend_tls: {ca_file: /nonexistent/ca.crt}\n", "backend_tls.ca_file", "cannot read /nonexistent/ca.crt"),
            ("backend_tls: {ca_file: \(notPEM)}\n", "backend_tls", "ca_file holds no PEM certificate"),
            ("backend_tls: {cert_file: \(certificates.client.cert)}\n", "backend_tls.key_file", "cert_file and key_file go together"),
            ("backend_tls: {cert_file: \(certificates.client.cert), key_file: \(certificates.server.key)}\n", "backend_tls",
             "key_file does not match cert_file"),
            ("backend_tls: {cert_file: \(certificates.client.cert), key_file: \(notPEM)}\n", "backend_tls",
             "key_file holds no PEM private key"),
            ("backend_tls: {verify: maybe}\n", "backend_tls.verify", "expected full, ca or none, got 'maybe'"),
            ("backend_tls: {min_version: '1.1'}\n", "backend_tls.min_version", "expected 1.2 or 1.3"),
            ("backend_tls: {ca: x}\n", "backend_tls.ca", "unknown key"),
            ("backend_tls: sometimes\n", "backend_tls", "expected true, false or a mapping"),
            ("listen_tls: {ca_file: \(certificates.ca)}\n", "listen_tls.cert_file", "is required"),
            ("listen_tls: true\n", "listen_tls", "expected a mapping"),
            ("listen_tls: {cert_file: \(certificates.server.cert), key_file: \(certificates.server.key), verify: none}\n",
             "listen_tls.verify", "unknown key"),
        ]
        for (yaml, key, message) in cases {
            let failure = error(yaml)
            #expect(failure?.key == key && failure?.message.contains(message) == true, "\(yaml): \(String(describing: failure))")
        }
    }

    /// A certificate renewed in place (same path, new content) changes the config: the reload
    /// makes a new context for new connections.
    @Test func renewedFileIsAChange() throws {
        let certificates = try TestCertificates.make()
        let ca = FileManager.default.temporaryDirectory.appendingPathComponent("ra-ca-\(UUID().uuidString).crt").path
        defer { try? FileManager.default.removeItem(atPath: ca) }
        try FileManager.default.copyItem(atPath: certificates.ca, toPath: ca)
        let before = try parse("backend_tls: {ca_file: \(ca)}\n")
        #expect(try parse("backend_tls: {ca_file: \(ca)}\n") == before, "unchanged files: no change")
        try FileManager.default.removeItem(atPath: ca)
        try FileManager.default.copyItem(atPath: certificates.otherCA, toPath: ca)
        let after = try parse("backend_tls: {ca_file: \(ca)}\n")
        #expect(before.changedKeys(to: after) == ["backend_tls"])
        #expect(before.backendTLS?.context !== after.backendTLS?.context)
    }
}
