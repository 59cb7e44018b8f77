import Proxy
import RESP
import Testing

/// ROLE replies as Redis, Valkey, KeyDB and Dragonfly write them (literal bytes), parsed without
/// a server.
@Suite struct RoleReportTests {
    static func parse(_ text: String) -> RoleReport? {
        guard let (value, _) = try? RESPValue.decode(Array(text.utf8)) else { return nil }
        return RoleReport.parse(value)
    }

    @Test func redisAndValkeyMasterAndReplica() {
        let master = Self.parse("*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n")
        #expect(master == RoleReport(role: .master, offset: 3129659))
        let replica = Self.parse("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$9\r\nconnected\r\n:3167038\r\n")
        #expect(replica == RoleReport(role: .replica, offset: 3167038, masterHost: "127.0.0.1", masterPort: 9000,
                                      linkState: "connected"))
        let syncing = Self.parse("*5\r\n$5\r\nslave\r\n$8\r\n10.0.0.7\r\n:6379\r\n$4\r\nsync\r\n:-1\r\n")
        #expect(syncing?.offset == -1 && syncing?.linkState == "sync")
    }

    @Test func dragonflyReplicaWithThePortAsAString() {
        let replica = Self.parse("*5\r\n$7\r\nreplica\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n$11\r\nstable_sync\r\n:42\r\n")
        #expect(replica == RoleReport(role: .replica, offset: 42, masterHost: "127.0.0.1", masterPort: 6379,
                                      linkState: "stable_sync"))
        // Older Dragonfly: four elements, no offset.
        let short = Self.parse("*4\r\n$7\r\nreplica\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n$9\r\nconnected\r\n")
        #expect(short?.role == .replica && short?.masterPort == 6379 && short?.offset == nil)
    }

    @Test func keydbActiveReplicaIsAReplica() {
        let active = Self.parse("*5\r\n$14\r\nactive-replica\r\n$9\r\n127.0.0.1\r\n:6380\r\n$9\r\nconnected\r\n:100\r\n")
        #expect(active?.role == .replica && active?.masterPort == 6380 && active?.offset == 100)
        #expect(RoleReport.normalisedName("active-replica") == "slave")
        #expect(RoleReport.normalisedName("REPLICA") == "slave")
        #expect(RoleReport.normalisedName("master") == "master")
    }

    @Test func otherRolesAndGarbage() {
        #expect(Self.parse("*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n")?.role == .sentinel)
        #expect(Self.parse("*1\r\n$7\r\nunknown\r\n")?.role == .other("unknown"))
        #expect(Self.parse("-ERR unknown command 'ROLE'\r\n") == nil)
        #expect(Self.parse("*0\r\n") == nil)
        #expect(Self.parse("*3\r\n$5\r\nslave\r\n$1\r\nh\r\n$5\r\n99999\r\n")?.masterPort == nil, "not a port")
    }
}
