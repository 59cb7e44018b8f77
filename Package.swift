// swift-tools-version:6.2
import PackageDescription

/// Release builds of the data-path modules skip Swift's run-time exclusivity checks: measured with
/// callgrind on a pipelined GET/SET run they were ~1,800 of ~8,500 instructions per request
/// (swift_beginAccess, AccessSet::insert, the TLS lookups behind them). Debug builds — the tests —
/// keep every check, so an overlapping access still fails there.
let dataPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "RedisAmbassador",
    products: [
        .executable(name: "redis-ambassador", targets: ["RedisAmbassador"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    targets: [
        // libevent 2.1 as a system library: module map + a thin shim (see Sources/CLibevent/shim.h).
        // No pkgConfig: its `-L/usr/lib/x86_64-linux-gnu` would come first on the link line and
        // keep Scripts/build-sidecar.sh from linking libevent statically (Debian keeps the headers
        // in /usr/include, which needs no flag).
        .systemLibrary(
            name: "CLibevent",
            providers: [.apt(["libevent-dev"])]
        ),
        // OpenSSL 3 (Debian's libssl-dev) as a system library, for TLS to backends and on the
        // listener: module map + the few macros and PEM loops Swift cannot call (Sources/COpenSSL/shim.h).
        .systemLibrary(
            name: "COpenSSL",
            providers: [.apt(["libssl-dev"])]
        ),
        // libevent's allocator: a per-thread pool of buffer blocks, in C (Sources/CBufferPool/pool.c).
        .target(name: "CBufferPool", linkerSettings: [.linkedLibrary("event")]),
        // The only module that imports CLibevent or COpenSSL, or touches Unmanaged / unsafe mutable pointers.
        .target(name: "EventLoop", dependencies: ["CLibevent", "CBufferPool", "COpenSSL"], swiftSettings: dataPath),
        // RESP framing and encoding: pure Swift, no I/O.
        .target(name: "RESP", swiftSettings: dataPath),
        // Command table (generated) and command classification: pure Swift.
        .target(name: "Routing", dependencies: ["RESP"], swiftSettings: dataPath),
        // libyaml (the reference YAML parser) loading a document into a node tree read through
        // const accessors (Sources/CYAMLTree/yaml_tree.c): the config needs no Foundation.
        .target(name: "CYAMLTree", linkerSettings: [.linkedLibrary("yaml")]),
        // The YAML config file → validated values; errors name the key and line. One table of
        // keys (ConfigKeys.swift) drives loading, the reload diff and the /config view.
        .target(name: "Config", dependencies: ["CYAMLTree", "EventLoop"]),
        // Client sessions, backend connections, ordering, multiplexing, pinning.
        .target(name: "Proxy", dependencies: [
            "EventLoop", "RESP", "Routing", "Config",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ], swiftSettings: dataPath),
        // The control plane: workers, reload (SIGHUP, file change, POST /reload), the admin
        // endpoint (evhttp), graceful shutdown.
        .target(name: "Control", dependencies: [
            "EventLoop", "Config", "Proxy", "RESP",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(
            name: "RedisAmbassador",
            dependencies: [
                "EventLoop", "RESP", "Routing", "Config", "Proxy", "Control",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Real redis-server processes and a blocking client for the tests (no mock Redis).
        .target(name: "TestSupport", dependencies: ["RESP"], path: "Tests/TestSupport"),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop", "TestSupport"]),
        .testTarget(name: "RESPTests", dependencies: ["RESP"]),
        .testTarget(name: "RoutingTests", dependencies: ["Routing", "RESP", "TestSupport"]),
        .testTarget(name: "ConfigTests", dependencies: ["Config", "EventLoop", "TestSupport"]),
        .testTarget(name: "ControlTests", dependencies: ["Control", "Proxy", "Config", "RESP", "EventLoop", "TestSupport"]),
        .testTarget(name: "ProxyTests", dependencies: [
            "Proxy", "Config", "Control", "EventLoop", "RESP", "Routing", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
    ]
)
