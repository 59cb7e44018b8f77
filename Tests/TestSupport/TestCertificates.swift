import Foundation

/// Certificates for the TLS tests, made by the `openssl` command line (EC P-256 keys: fast), once
/// per test process, in a temporary directory:
/// - `ca`: the CA every good certificate chains to;
/// - `server`: SAN IP:127.0.0.1 and DNS:localhost, signed by `ca` (what redis-server presents);
/// - `client`: a client certificate signed by `ca` (mutual TLS);
/// - `otherCA`, and `otherServer` signed by it: a chain the first CA does not trust;
/// - `expired`: the server key, signed by `ca`, valid in January 2020 only;
/// - `wrongHost`: signed by `ca`, for wrong.example.com and 10.9.9.9 only.
public final class TestCertificates: @unchecked Sendable {
    public struct Pair: Sendable {
        public let cert: String
        public let key: String
    }

    public let directory: URL
    public let ca: String
    public let otherCA: String
    public let server: Pair
    public let client: Pair
    public let otherServer: Pair
    public let expired: Pair
    public let wrongHost: Pair

    /// Made on first use, shared by every test of the process (read-only afterwards).
    public static let shared: Result<TestCertificates, Error> = Result { try TestCertificates() }

    public static func make() throws -> TestCertificates { try shared.get() }

    private init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ra-certs-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let dir = directory.path
        func path(_ name: String) -> String { "\(dir)/\(name)" }
        func openssl(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = try RedisServer.executable("openssl")
            process.arguments = arguments
            process.currentDirectoryURL = URL(fileURLWithPath: dir)
            let errors = Pipe()
            process.standardOutput = FileHandle.nullDevice
            process.standardError = errors
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let text = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw RedisServerError.didNotStart("openssl \(arguments.joined(separator: " ")): \(String(decoding: text, as: UTF8.self))")
            }
        }
        func key(_ name: String) throws -> String {
            try openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path("\(name).key")])
            return path("\(name).key")
        }
        func authority(_ name: String, _ subject: String) throws -> String {
            try openssl(["req", "-x509", "-new", "-key", try key(name), "-sha256", "-days", "3650", "-subj", "/CN=\(subject)",
                         "-out", path("\(name).crt")])
            return path("\(name).crt")
        }
        /// A certificate for `keyName`'s key, signed by `caName`, with `extensions`.
        func issue(_ name: String, key keyName: String, by caName: String, extensions: String,
                   dates: (String, String)? = nil) throws -> Pair {
            let keyPath = FileManager.default.fileExists(atPath: path("\(keyName).key")) ? path("\(keyName).key") : try key(keyName)
            try openssl(["req", "-new", "-key", keyPath, "-subj", "/CN=\(name)", "-out", path("\(name).csr")])
            try extensions.write(toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
            if let (start, end) = dates {
                // `openssl x509` cannot date a certificate in the past; `openssl ca` can.
                try FileManager.default.createDirectory(atPath: path("db-\(name)"), withIntermediateDirectories: true)
                try "".write(toFile: path("db-\(name)/index.txt"), atomically: true, encoding: .utf8)
                try "01\n".write(toFile: path("db-\(name)/serial"), atomically: true, encoding: .utf8)
                try """
                    [ ca ]
                    default_ca = test
                    [ test ]
                    database = db-\(name)/index.txt
                    serial = db-\(name)/serial
                    new_certs_dir = db-\(name)
                    default_md = sha256
                    policy = any
                    unique_subject = no
                    [ any ]
                    commonName = supplied
                    """.write(toFile: path("\(name).cnf"), atomically: true, encoding: .utf8)
                try openssl(["ca", "-batch", "-config", path("\(name).cnf"), "-cert", path("\(caName).crt"),
                             "-keyfile", path("\(caName).key"), "-in", path("\(name).csr"), "-startdate", start,
                             "-enddate", end, "-extfile", path("\(name).ext"), "-notext", "-out", path("\(name).crt")])
            } else {
                try openssl(["x509", "-req", "-in", path("\(name).csr"), "-CA", path("\(caName).crt"), "-CAkey", path("\(caName).key"),
                             "-CAcreateserial", "-days", "365", "-sha256", "-extfile", path("\(name).ext"), "-out", path("\(name).crt")])
            }
            return Pair(cert: path("\(name).crt"), key: keyPath)
        }
        ca = try authority("ca", "ambassador test CA")
        otherCA = try authority("other-ca", "another CA")
        let serverExtensions = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
        server = try issue("server", key: "server", by: "ca", extensions: serverExtensions)
        client = try issue("client", key: "client", by: "ca", extensions: "extendedKeyUsage=clientAuth\n")
        otherServer = try issue("other-server", key: "other-server", by: "other-ca", extensions: serverExtensions)
        expired = try issue("expired", key: "server", by: "ca", extensions: serverExtensions,
                            dates: ("20200101000000Z", "20200201000000Z"))
        wrongHost = try issue("wrong-host", key: "server", by: "ca",
                              extensions: "subjectAltName=DNS:wrong.example.com,IP:10.9.9.9\nextendedKeyUsage=serverAuth,clientAuth\n")
    }
}
