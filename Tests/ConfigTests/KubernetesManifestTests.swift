@testable import Config
import Foundation
import Testing

/// `Config/kubernetes/`: the pieces must fit together, or the Pod starts with a broken sidecar.
@Suite struct KubernetesManifestTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Config/kubernetes").standardized

    static func load(_ name: String) throws -> [String: Any] {
        let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        let root = try #require(try YAMLNode.parse(Array(text.utf8)), "\(name) has a document")
        return try #require(plain(root) as? [String: Any], "\(name) is a YAML mapping")
    }

    /// A node as Foundation-style values: YAML 1.2's core schema for plain scalars (integers,
    /// booleans, null), text for everything else.
    static func plain(_ node: YAMLNode) -> Any {
        switch node.content {
        case .scalar(let text, let isPlain):
            guard isPlain else { return text }
            if node.isNull { return NSNull() }
            if let number = Int(text) { return number }
            if ["true", "True", "TRUE"].contains(text) { return true }
            if ["false", "False", "FALSE"].contains(text) { return false }
            return text
        case .sequence(let items): return items.map(plain)
        case .mapping(let pairs):
            var dictionary: [String: Any] = [:]
            for (key, value) in pairs { dictionary[key.string ?? ""] = plain(value) }
            return dictionary
        }
    }

    @Test func sidecarConfigMapAndSecretFitTogether() throws {
        let configMap = try Self.load("configmap.yaml")
        let secret = try Self.load("secret.yaml")
        let deployment = try Self.load("deployment.yaml")
        #expect(configMap["kind"] as? String == "ConfigMap" && secret["kind"] as? String == "Secret")
        let embedded = try #require((configMap["data"] as? [String: Any])?["ambassador.yaml"] as? String)
        let password = try #require((secret["stringData"] as? [String: Any])?["password"] as? String)

        let pod = try #require(((deployment["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
        let sidecar = try #require((pod["initContainers"] as? [[String: Any]])?.first)
        #expect(sidecar["restartPolicy"] as? String == "Always", "a native sidecar")
        let mounts = sidecar["volumeMounts"] as? [[String: Any]] ?? []
        #expect(mounts.allSatisfy { $0["subPath"] == nil }, "subPath mounts never see ConfigMap updates")
        let volumes = pod["volumes"] as? [[String: Any]] ?? []
        func mountPath(of source: String, named name: String) throws -> String {
            let volume = try #require(volumes.first { ($0[source] as? [String: Any]).map { $0["name"] as? String == name || $0["secretName"] as? String == name } ?? false })
            let mount = try #require(mounts.first { $0["name"] as? String == volume["name"] as? String })
            return try #require(mount["mountPath"] as? String)
        }
        let configDirectory = try mountPath(of: "configMap", named: "redis-ambassador")
        let secretDirectory = try mountPath(of: "secret", named: "redis-ambassador")
        let args = sidecar["args"] as? [String] ?? []
        #expect(args == ["--config", configDirectory + "/ambassador.yaml"])

        // The embedded config is valid, with the Secret where password_file says it is.
        let staged = FileManager.default.temporaryDirectory.appendingPathComponent("k8s-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: staged) }
        try FileManager.default.createDirectory(at: staged, withIntermediateDirectories: true)
        try password.write(to: staged.appendingPathComponent("password"), atomically: true, encoding: .utf8)
        #expect(embedded.contains("password_file: \(secretDirectory)/password"))
        let config = try ConfigLoader.parse(embedded.replacingOccurrences(of: secretDirectory, with: staged.path))
        #expect(config.password == password)
        let admin = try #require(config.adminListen, "probes need the admin endpoint")
        #expect(config.shutdownTimeout.seconds < Double(pod["terminationGracePeriodSeconds"] as? Int ?? 30))

        // Probes hit the admin port; the app points at the ambassador's listen port.
        let ports = sidecar["ports"] as? [[String: Any]] ?? []
        #expect(ports.contains { $0["name"] as? String == "admin" && $0["containerPort"] as? Int == Int(admin.port) })
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/readyz")] {
            let get = (sidecar[probe] as? [String: Any])?["httpGet"] as? [String: Any]
            #expect(get?["path"] as? String == path && get?["port"] as? String == "admin", "\(probe)")
        }
        let app = try #require((pod["containers"] as? [[String: Any]])?.first)
        let env = app["env"] as? [[String: Any]] ?? []
        let listen = try #require(config.listen.tcp)
        #expect(env.contains { $0["value"] as? String == "redis://\(listen.host):\(listen.port)" })
    }

    /// The cluster variant replaces the same ConfigMap: same name, listen, admin port and
    /// Secret path as the Deployment expects, and a valid `discovery: cluster` config.
    @Test func clusterConfigMapIsADropInReplacement() throws {
        let standalone = try Self.load("configmap.yaml")
        let cluster = try Self.load("configmap-cluster.yaml")
        #expect((cluster["metadata"] as? [String: Any])?["name"] as? String
                == (standalone["metadata"] as? [String: Any])?["name"] as? String)
        func config(_ map: [String: Any]) throws -> AmbassadorConfig {
            let embedded = try #require((map["data"] as? [String: Any])?["ambassador.yaml"] as? String)
            let staged = FileManager.default.temporaryDirectory.appendingPathComponent("k8s-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: staged, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: staged) }
            try "secret".write(to: staged.appendingPathComponent("password"), atomically: true, encoding: .utf8)
            return try ConfigLoader.parse(embedded.replacingOccurrences(of: "/etc/redis-ambassador/secret", with: staged.path))
        }
        let (plain, sharded) = (try config(standalone), try config(cluster))
        #expect(sharded.discovery.isCluster)
        #expect(sharded.listen == plain.listen && sharded.adminListen == plain.adminListen)
        #expect(sharded.password == "secret" && sharded.shutdownTimeout == plain.shutdownTimeout)
    }

    @Test func dockerfileBuildsStaticAndRunsSlim() throws {
        let text = try String(contentsOf: Self.directory.appendingPathComponent("Dockerfile"), encoding: .utf8)
        // The build stage runs the sidecar build, which links the Swift runtime, libstdc++,
        // libevent, libyaml and OpenSSL in (and checks with ldd that it did); the run stage then
        // installs no library at all, only the CA bundle (`backend_tls: true`).
        #expect(text.contains("Scripts/build-sidecar.sh"))
        let script = try String(contentsOf: Self.directory.appendingPathComponent("../../Scripts/build-sidecar.sh"), encoding: .utf8)
        #expect(script.contains("--static-swift-stdlib") && script.contains("for lib in stdc++ event yaml ssl crypto"))
        let runStage = try #require(text.components(separatedBy: "FROM debian:bookworm-slim").last)
        let installed = runStage.components(separatedBy: "apt-get install").dropFirst()
            .map { $0.components(separatedBy: "&&").first ?? "" }.joined()
        #expect(text.contains("FROM debian:bookworm-slim") && installed.contains("ca-certificates")
                && !installed.contains("lib"), "\(installed)")
        let deployment = try String(contentsOf: Self.directory.appendingPathComponent("deployment.yaml"), encoding: .utf8)
        #expect(deployment.contains("image: redis-ambassador:\(Self.version(text))"))
    }

    static func version(_ dockerfile: String) -> String {
        guard let range = dockerfile.range(of: "redis-ambassador:") else { return "?" }
        return String(dockerfile[range.upperBound...].prefix { !$0.isWhitespace })
    }
}
