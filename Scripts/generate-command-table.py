#!/usr/bin/env python3
"""Generates Sources/Routing/CommandTable+Generated.swift from a real redis-server's own metadata.

Starts a throwaway redis-server on a free loopback port, reads `COMMAND` (every command with its
subcommands: arity, flags, legacy key positions, ACL categories) and `COMMAND DOCS` (the group),
and writes a Swift table with a "do not edit" header naming the Redis version it came from.

Usage: Scripts/generate-command-table.py [--redis-server PATH] [--output FILE]
Needs only python3 and redis-server; no Python packages.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(ROOT, "Sources", "Routing", "CommandTable+Generated.swift")

# Redis flag name -> CommandFlags member. Every flag Redis 7 reports; an unknown one stops the script
# so a newer Redis cannot silently drop information.
FLAGS = {
    "write": "write", "readonly": "readonly", "denyoom": "denyOOM", "module": "module",
    "admin": "admin", "pubsub": "pubsub", "noscript": "noScript", "blocking": "blocking",
    "loading": "loading", "stale": "stale", "skip_monitor": "skipMonitor",
    "skip_slowlog": "skipSlowlog", "asking": "asking", "fast": "fast", "no_auth": "noAuth",
    "may_replicate": "mayReplicate", "sentinel": "sentinel", "only_sentinel": "onlySentinel",
    "no_mandatory_keys": "noMandatoryKeys", "no_propagate": "noPropagate", "no_multi": "noMulti",
    "allow_busy": "allowBusy", "movablekeys": "movableKeys", "no_async_loading": "noAsyncLoading",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    """A minimal RESP2 client: enough for COMMAND and COMMAND DOCS."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self.read()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("unexpected reply type %r" % kind)


def pairs(flat):
    return dict(zip(flat[0::2], flat[1::2])) if isinstance(flat, list) else {}


def swift_entry(info, groups, indent):
    name, arity, flags, first, last, step, categories = info[:7]
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        sys.exit("unknown command flag(s) %s on %s: add them to FLAGS and CommandFlags" % (unknown, name))
    flag_list = ", ".join("." + FLAGS[f] for f in sorted(set(flags), key=list(FLAGS).index))
    cats = [c.lstrip("@") for c in categories]
    group = groups.get(name, "")
    return (f'{indent}CommandInfo(name: "{name}", arity: {arity}, flags: [{flag_list}], '
            f'firstKey: {first}, lastKey: {last}, keyStep: {step}, group: "{group}", '
            f'aclCategories: {swift_list(cats)})')


def swift_list(items):
    return "[" + ", ".join('"%s"' % i for i in items) + "]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-server", default="redis-server")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="ra-cmdtable-")
    server = subprocess.Popen(
        [args.redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                conn = Conn(port)
                conn.call("PING")
                break
            except (OSError, EOFError, RuntimeError):
                time.sleep(0.05)
        else:
            sys.exit("redis-server did not start")
        version = next(line.split(":", 1)[1] for line in conn.call("INFO", "server").splitlines()
                       if line.startswith("redis_version:"))
        commands = conn.call("COMMAND")
        docs = pairs(conn.call("COMMAND", "DOCS"))
    finally:
        server.terminate()
        server.wait()

    groups = {}
    for name, doc in docs.items():
        d = pairs(doc)
        groups[name] = d.get("group", "")
        for sub, subdoc in pairs(d.get("subcommands")).items():
            groups[sub] = pairs(subdoc).get("group", "")

    commands.sort(key=lambda c: c[0])
    lines = [
        f"// Generated by Scripts/generate-command-table.py from redis-server {version}. Do not edit:",
        "// run the script again (it starts its own redis-server) to refresh it.",
        "",
        "extension CommandTable {",
        f'    /// The Redis version this table was read from.',
        f'    public static let generatedFromRedisVersion = "{version}"',
        "",
        f"    /// Every command of redis-server {version}, with its subcommands (`config|get` …).",
        "    static let generatedCommands: [CommandInfo] = [",
    ]
    count = 0
    for c in commands:
        subs = sorted(c[9] if len(c) > 9 and c[9] else [], key=lambda s: s[0])
        entry = swift_entry(c, groups, "        ")
        count += 1 + len(subs)
        if subs:
            lines.append(entry[:-1] + ", subcommands: [")
            for s in subs:
                lines.append(swift_entry(s, groups, "            ") + ",")
            lines.append("        ]),")
        else:
            lines.append(entry + ",")
    lines += ["    ]", "}", ""]
    with open(args.output, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.output}: {len(commands)} commands, {count} entries with subcommands, "
          f"from redis-server {version}")


if __name__ == "__main__":
    main()
