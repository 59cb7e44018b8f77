#!/usr/bin/env python3
"""Network soak (see Scripts/soak.sh): hostile clients against a running ambassador in front of a
real master and replica (with --cluster: a Redis Cluster of three masters with a replica each),
while well-behaved clients check every reply they get.

Hostile clients, each on a connection of its own, chosen at random over and over:
  garbage      random bytes, then close
  truncated    a valid pipeline cut at a random byte, then close
  huge         a multibulk or bulk length far past the limits
  reset        a pipeline of reads and writes, then an RST (SO_LINGER 0) before reading a reply
  half-open    a partial command, then shutdown(SHUT_WR), reading what comes back
  stalled      a partial command left hanging (held open, closed later)
  no-reader    a large pipeline written without ever reading, then closed
  stateful     SUBSCRIBE / MULTI / BLPOP / MONITOR / WATCH / WAIT, abandoned midway
  random       random command names and arguments, read for a short while

The well-behaved client runs SET/GET/INCR/MULTI/EXEC/LPUSH/LRANGE with values it can predict and
counts every reply that is not the one a single Redis gives. In front of a cluster its keys share
a hash tag (so its transaction has one shard), and it also writes, reads and deletes three keys
of other slots in one MSET / MGET / DEL each (split per shard and merged by the ambassador). At the end: requests, errors, the
hostile connections and actions, and the ambassador's RSS before, at peak and after (once every
hostile connection is closed and its count is back to the baseline).
"""
import argparse, os, random, shutil, socket, struct, subprocess, sys, tempfile, threading, time, urllib.request

from bench import RedisCluster, free_port, rss_kib, wait_port


def rss_parts(pid):
    """(RssAnon, RssFile) in KiB: the process's own memory, and the pages of its binary and
    libraries it has touched (clean, shared, reclaimable: code paths a burst ran for the first
    time stay resident, which is not memory the process holds)."""
    parts = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                parts[line.split(":")[0]] = int(line.split()[1])
    return parts.get("RssAnon", 0), parts.get("RssFile", 0)


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Reader:
    """A blocking RESP2 reader for the well-behaved client."""
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-", b":"):
            return line
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ValueError(f"unexpected reply line {line!r}")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.actions = {}
        self.good_requests = 0
        self.good_errors = []

    def action(self, name):
        with self.lock:
            self.actions[name] = self.actions.get(name, 0) + 1


def good_client(port, stop, stats, ident, cluster=False):
    """Runs commands whose replies it knows, on one connection, and counts every difference."""
    rng = random.Random(ident)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    r = Reader(sock)
    counter = 0
    key = f"{{soak:good:{ident}}}" if cluster else f"soak:good:{ident}"
    spread = [f"soak:spread:{ident}:{j}" for j in range(3)]  # no tag: three slots, most often three shards
    sock.sendall(encode("DEL", key, key + ":n", key + ":l"))
    r.reply()
    i = 0
    while not stop.is_set():
        i += 1
        value = f"v{i}-{rng.random()}"
        steps = [
            (encode("SET", key, value), b"+OK"),
            (encode("GET", key), value.encode()),
            (encode("INCR", key + ":n"), b":%d" % (counter + 1)),
            (encode("LPUSH", key + ":l", value), None),
            (encode("MULTI"), b"+OK"),
            (encode("INCR", key + ":n"), b"+QUEUED"),
            (encode("GET", key), b"+QUEUED"),
            (encode("EXEC"), [b":%d" % (counter + 2), value.encode()]),
            (encode("LTRIM", key + ":l", 0, 9), b"+OK"),
            (encode("LINDEX", key + ":l", 0), value.encode()),
        ]
        if cluster:
            values = [f"{value}:{j}".encode() for j in range(3)]
            steps += [
                (encode("MSET", *[x for pair in zip(spread, values) for x in pair]), b"+OK"),
                (encode("MGET", *spread), values),
                (encode("EXISTS", *spread, spread[0]), b":4"),
                (encode("DEL", *spread), b":3"),
            ]
        counter += 2
        # Half the time pipelined, half one by one.
        try:
            if i % 2:
                sock.sendall(b"".join(s for s, _ in steps))
                replies = [r.reply() for _ in steps]
            else:
                replies = []
                for s, _ in steps:
                    sock.sendall(s)
                    replies.append(r.reply())
        except (OSError, ConnectionError, ValueError) as e:
            stats.good_errors.append(f"client {ident}: {e!r}")
            return
        for (request, expected), got in zip(steps, replies):
            if expected is not None and got != expected:
                stats.good_errors.append(f"client {ident}: {request!r} → {got!r}, expected {expected!r}")
            if expected is None and not (isinstance(got, bytes) and got.startswith(b":")):
                stats.good_errors.append(f"client {ident}: {request!r} → {got!r}")
        with stats.lock:
            stats.good_requests += len(steps)
    sock.close()


COMMANDS = [b"GET", b"SET", b"MGET", b"HSET", b"HGETALL", b"LPUSH", b"LRANGE", b"INCR", b"DEL", b"EXISTS",
            b"SCAN", b"PING", b"ECHO", b"CLIENT", b"SELECT", b"EVAL", b"WAIT", b"XADD", b"ZADD", b"SUBSCRIBE",
            b"MULTI", b"EXEC", b"WATCH", b"HELLO", b"AUTH", b"RESET", b"INFO", b"TYPE", b"OBJECT", b"NOSUCH",
            b"MSET", b"UNLINK", b"TOUCH", b"KEYS", b"DBSIZE", b"SSUBSCRIBE", b"SPUBLISH", b"CLUSTER", b"READONLY",
            b"ASKING", b"BLMOVE", b"SUNIONSTORE"]


def random_command(rng):
    name = rng.choice(COMMANDS)
    args = [name] + [rng.choice([b"soak:k%d" % rng.randrange(50), rng.randbytes(rng.randrange(0, 40)),
                                 str(rng.randrange(-5, 100)).encode()]) for _ in range(rng.randrange(0, 5))]
    return encode(*args)


def valid_pipeline(rng, n):
    return b"".join(random_command(rng) for _ in range(n))


ACTIONS = ["garbage", "truncated", "huge", "reset", "half-open", "stalled", "no-reader", "stateful", "random"]


def hostile(port, stop, stats, ident, held, actions=ACTIONS):
    rng = random.Random(1000 + ident)
    while not stop.is_set():
        action = rng.choice(actions)
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            stats.action("connect-failed")
            time.sleep(0.01)
            continue
        stats.action(action)
        try:
            if action == "garbage":
                sock.sendall(rng.randbytes(rng.randrange(1, 4096)))
            elif action == "truncated":
                data = valid_pipeline(rng, rng.randrange(1, 20))
                sock.sendall(data[:rng.randrange(1, len(data))])
            elif action == "huge":
                sock.sendall(rng.choice([b"*99999999999\r\n", b"*2\r\n$4\r\nECHO\r\n$9999999999\r\n",
                                         b"*1\r\n$-7\r\n", b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\nxyz",
                                         b"$" + b"9" * 200 + b"\r\n", b"*" + b"1" * 100 + b"\r\n"]))
                sock.recv(4096)
            elif action == "reset":
                sock.sendall(valid_pipeline(rng, rng.randrange(10, 200)))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif action == "half-open":
                data = random_command(rng)
                sock.sendall(data[:rng.randrange(1, len(data) + 1)])
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
            elif action == "stalled":
                data = random_command(rng)
                sock.sendall(data[:rng.randrange(1, len(data))])
                with held[1]:
                    held[0].append(sock)
                    while len(held[0]) > 200:
                        held[0].pop(0).close()
                continue
            elif action == "no-reader":
                big = encode("SET", "soak:big", rng.randbytes(100_000))
                sock.sendall(big + encode("GET", "soak:big") * rng.randrange(10, 200))
            elif action == "stateful":
                sock.sendall(rng.choice([encode("SUBSCRIBE", "soak:ch"), encode("MULTI") + encode("SET", "soak:m", "1"),
                                         encode("BLPOP", "soak:nothing", "0"), encode("MONITOR"),
                                         encode("WATCH", "soak:w") + encode("GET", "soak:w"),
                                         encode("PSUBSCRIBE", "soak:*") + encode("PING"),
                                         encode("SSUBSCRIBE", "soak:ch") + encode("PING"),
                                         encode("MULTI") + encode("SET", "soak:a", "1") + encode("SET", "soak:b", "1"),
                                         # Tracking and keyspace notifications (in a cluster: a
                                         # connection to every master), a transaction that moves.
                                         encode("HELLO", "3") + encode("CLIENT", "TRACKING", "ON") + encode("GET", "soak:t1")
                                         + encode("GET", "soak:t2") + encode("GET", "soak:t3"),
                                         encode("PSUBSCRIBE", "__keyevent@0__:*") + encode("PING"),
                                         encode("HELLO", "3") + encode("SUBSCRIBE", "__keyspace@0__:soak:a") + encode("GET", "soak:b"),
                                         encode("MULTI") + encode("PING") + encode("SET", "soak:c", "1") + encode("EXEC"),
                                         # A WAIT that never ends, after a write; a refused EXEC
                                         # (no MULTI) that leaves a WATCH on a dirtied key.
                                         encode("SET", "soak:w", "1") + encode("WAIT", "3", "0"),
                                         encode("WATCH", "soak:w") + encode("EXEC") + encode("SET", "soak:w", "2")]))
                sock.recv(4096)
            else:
                sock.sendall(valid_pipeline(rng, rng.randrange(1, 30)))
                sock.settimeout(0.05)
                try:
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass
        except OSError:
            pass
        sock.close()


def memory_fields(port):
    """The ambassador's own view of its memory (AMBASSADOR INFO): heap in use and free, pooled
    slots, learned command names."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(encode("AMBASSADOR", "INFO"))
    text = Reader(s).reply().decode()
    s.close()
    keys = ("heap_in_use_bytes", "heap_free_bytes", "pooled_slots", "learned_commands", "skipped_reply_bytes")
    return " ".join(l for l in text.splitlines() if l.startswith(keys))


def admin_gauge(admin, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ambassador", required=True)
    ap.add_argument("--seconds", type=float, default=60, help="hostile traffic in all, split over the rounds")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each followed by a quiet measurement")
    ap.add_argument("--hostile", type=int, default=8, help="hostile client threads")
    ap.add_argument("--good", type=int, default=2, help="well-behaved client threads")
    ap.add_argument("--actions", default=",".join(ACTIONS), help="the hostile actions to choose from")
    ap.add_argument("--cluster", action="store_true", help="in front of a Redis Cluster (3 masters, 3 replicas)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ra-soak-")
    procs = []
    try:
        listen, admin = free_port(), free_port()
        if args.cluster:
            cluster = RedisCluster(work)
            procs.extend(cluster.procs)
            backends = f"discovery: cluster\ncluster_nodes: [127.0.0.1:{cluster.nodes[0]}]\n"
        else:
            master, replica = free_port(), free_port()
            for port, extra in ((master, []), (replica, ["--replicaof", "127.0.0.1", str(master)])):
                d = os.path.join(work, str(port))
                os.mkdir(d)
                procs.append(subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                               "--appendonly", "no", "--dir", d, "--logfile", os.path.join(d, "redis.log"), "--loglevel", "verbose", *extra],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                wait_port(port)
            backends = f"master: 127.0.0.1:{master}\nreplicas:\n  - 127.0.0.1:{replica}\n"
        conf = os.path.join(work, "ambassador.yaml")
        with open(conf, "w") as f:
            f.write(f"listen: 127.0.0.1:{listen}\n{backends}admin:\n  listen: 127.0.0.1:{admin}\nlog_level: warning\n")
        log = open(os.path.join(work, "ambassador.log"), "w")
        ambassador = subprocess.Popen([args.ambassador, "--config", conf], stdout=subprocess.DEVNULL, stderr=log)
        procs.append(ambassador)
        wait_port(listen)
        # Warm up (the first connections grow the heap and the buffer pool), then the baseline.
        warm = threading.Event()
        warm_stats = Stats()
        threads = [threading.Thread(target=good_client, args=(listen, warm, warm_stats, 100 + i, args.cluster)) for i in range(4)]
        [t.start() for t in threads]
        time.sleep(2)
        warm.set()
        [t.join() for t in threads]
        # The baseline is a quiet ambassador's, like the figure after: the warm-up's buffers have
        # been given back (one quiet sweep interval, 5-10 s).
        time.sleep(11)
        baseline = rss_kib(ambassador.pid)
        baseline_anon, baseline_file = rss_parts(ambassador.pid)
        baseline_memory = memory_fields(listen)
        if os.environ.get("SOAK_SMAPS"):
            shutil.copy(f"/proc/{ambassador.pid}/smaps", os.environ["SOAK_SMAPS"] + ".before")
        baseline_clients = admin_gauge(admin, "redis_ambassador_client_connections")
        # Backend connections open after each round (shared, pooled and dedicated ones): a session
        # that leaked its dedicated connections would leave more after every round (in CI's 10 s
        # soak some 40 tracking or notification sessions a round, 2 connections each, in a
        # cluster). The pools and overflow connections wobble by up to 9 from round to round.
        backends = []

        stats = Stats()
        actions = args.actions.split(",")
        peak = baseline
        rounds = []  # (RSS, anonymous, file, AMBASSADOR INFO memory, connections left) after each round
        settled = alive = True
        for number in range(args.rounds):
            stop, held = threading.Event(), ([], threading.Lock())
            threads = [threading.Thread(target=good_client, args=(listen, stop, stats, number * 100 + i, args.cluster))
                       for i in range(args.good)]
            threads += [threading.Thread(target=hostile, args=(listen, stop, stats, number * 100 + i, held, actions))
                        for i in range(args.hostile)]
            [t.start() for t in threads]
            started = time.time()
            while time.time() - started < args.seconds / args.rounds:
                time.sleep(0.5)
                if ambassador.poll() is not None:
                    break
                peak = max(peak, rss_kib(ambassador.pid))
            stop.set()
            [t.join() for t in threads]
            for sock in held[0]:
                sock.close()
            alive = ambassador.poll() is None
            if not alive:
                break
            deadline, gone = time.time() + 30, False
            while time.time() < deadline and not gone:
                gone = admin_gauge(admin, "redis_ambassador_client_connections") <= baseline_clients
                time.sleep(0.2)
            settled = settled and gone
            left = admin_gauge(admin, "redis_ambassador_client_connections")
            backends.append(admin_gauge(admin, "redis_ambassador_backend_connections"))
            # Measured like the baseline: a quiet ambassador, once it has given back what the burst
            # left (one quiet sweep interval, 5-10 s).
            time.sleep(11)
            rounds.append((rss_kib(ambassador.pid), *rss_parts(ambassador.pid), memory_fields(listen), left))
        after, after_anon, after_file, after_memory, left = rounds[-1] if rounds else (0, 0, 0, "", 0)
        if alive and os.environ.get("SOAK_SMAPS"):
            shutil.copy(f"/proc/{ambassador.pid}/smaps", os.environ["SOAK_SMAPS"] + ".after")
        # A fresh client still gets exact answers.
        fresh_ok = False
        if alive:
            s = socket.create_connection(("127.0.0.1", listen), timeout=5)
            s.sendall(encode("SET", "soak:fresh", "1") + encode("GET", "soak:fresh"))
            r = Reader(s)
            fresh_ok = r.reply() == b"+OK" and r.reply() == b"1"
            s.close()
        hostile_total = sum(v for k, v in stats.actions.items() if k != "connect-failed")
        print(f"soak{' (cluster)' if args.cluster else ''}: {args.seconds:.0f} s in {args.rounds} rounds, "
              f"{args.hostile} hostile + {args.good} well-behaved client threads")
        print(f"  well-behaved: {stats.good_requests} requests, {len(stats.good_errors)} wrong or failed replies")
        for e in stats.good_errors[:10]:
            print(f"    {e}")
        print(f"  hostile: {hostile_total} connections: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.actions.items())))
        print(f"  ambassador: {'alive' if alive else f'EXITED with {ambassador.returncode}'}; "
              f"client connections back to baseline ({baseline_clients:.0f}): {settled} ({left:.0f} open); "
              f"fresh client served: {fresh_ok}")
        if alive and not settled:
            s = socket.create_connection(("127.0.0.1", listen), timeout=5)
            s.sendall(encode("CLIENT", "LIST"))
            listing = Reader(s).reply().decode(errors="replace").splitlines()
            s.close()
            print(f"  CLIENT LIST ({len(listing)}): " + "\n    ".join(line for line in listing[:5]))
        print(f"  RSS (quiet): baseline {baseline} KiB (own/anonymous {baseline_anon}, mapped files {baseline_file}); "
              f"peak {peak} KiB")
        for number, (rss, anon, mapped, memory, _) in enumerate(rounds, 1):
            print(f"    after round {number}: {rss} KiB ({(rss - baseline) / max(baseline, 1) * 100:+.1f} %), "
                  f"own {anon} KiB, mapped files {mapped} KiB; {memory}")
        print(f"    baseline: {baseline_memory}")
        print(f"  backend connections open after each round: {', '.join(f'{b:.0f}' for b in backends)}")
        log.flush()
        crashes = [l for l in open(os.path.join(work, "ambassador.log")) if "Fatal" in l or "fatal" in l]
        # No leak: the live heap (malloc's bytes in use, the ambassador's and libevent's) after the
        # last round is no more than after the first one plus 256 KiB (bounded caches, such as the
        # learned command names, fill a little each round; a leak grows it with every round's
        # thousands of connections), and no round ends with the process's own memory more than
        # 4 MiB over the baseline. (The own memory's round-to-round wobble is free memory glibc
        # keeps resident around live blocks, not a leak: heap_free_bytes.)
        def in_use(memory):
            return next((int(f.split(":")[1]) for f in memory.split() if f.startswith("heap_in_use_bytes:")), 0)
        live = [in_use(r[3]) for r in rounds]
        ok = alive and settled and fresh_ok and not stats.good_errors and not crashes and rounds \
            and live[-1] <= live[0] + 256 * 1024 and max(r[1] for r in rounds) <= baseline_anon + 4096 \
            and backends[-1] <= backends[0] + 16
        print("  result: " + ("ok" if ok else "FAILED"))
        sys.exit(0 if ok else 1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
        if os.environ.get("SOAK_KEEP"):
            print(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
