import Config
import Testing

/// The command line, parsed without swift-argument-parser: the forms the README, the Dockerfile
/// and the Kubernetes manifests use, and the mistakes a user makes.
@Suite struct InvocationTests {
    @Test func runForms() throws {
        #expect(try Invocation.parse(["--config", "a.yaml"]) == .run(.init(config: "a.yaml")))
        #expect(try Invocation.parse(["run", "--config=a.yaml"]) == .run(.init(config: "a.yaml")))
        let flags = try Invocation.parse(["--listen", "127.0.0.1:1", "--master", "127.0.0.1:2", "--replica", "127.0.0.1:3",
                                          "--replica=127.0.0.1:4", "--read-policy", "master"])
        guard case .run(let options) = flags else { Issue.record("\(flags)"); return }
        #expect(options.replicas == ["127.0.0.1:3", "127.0.0.1:4"] && options.readPolicy == "master")
        let config = try ConfigLoader.parse(options.yaml)
        #expect(config.replicas.count == 2 && config.readPolicy == .master && config.master.port == 2)
    }

    @Test func otherCommands() throws {
        #expect(try Invocation.parse(["check-config", "a.yaml"]) == .checkConfig(path: "a.yaml"))
        #expect(try Invocation.parse(["check-config", "--keys"]) == .listKeys)
        #expect(try Invocation.parse(["--version"]) == .version)
        #expect(try Invocation.parse(["check-config", "--help"]) == .help(Invocation.usage))
        #expect(try Invocation.parse(["-h"]) == .help(Invocation.usage))
    }

    @Test func mistakesAreUsageErrors() {
        let cases: [([String], String)] = [
            ([], "give --config FILE"),
            (["--config"], "missing value for '--config'"),
            (["--config", "--listen", "x"], "missing value"),
            (["--config", "a", "--master", "b"], "not both"),
            (["--listen", "127.0.0.1:1"], "give --config FILE"),
            (["--bogus"], "unknown option '--bogus'"),
            (["run", "stray"], "unexpected argument 'stray'"),
            (["check-config"], "give the config file"),
            (["check-config", "a", "b"], "unexpected argument 'b'"),
            (["serve"], "unknown subcommand 'serve'"),
        ]
        for (arguments, message) in cases {
            #expect {
                try Invocation.parse(arguments)
            } throws: { error in
                "\(error)".contains(message)
            }
        }
    }
}
