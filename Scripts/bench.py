#!/usr/bin/env python3
"""Interleaved benchmark: direct Redis vs twemproxy vs redis-ambassador (see Scripts/bench.sh).

Starts a master and two replicas, twemproxy (one pool, one server connection, in front of the
master), the ambassador with read_policy prefer-replica and a second one with read_policy master
(which isolates the proxy's own cost: same single server as direct and twemproxy), and the same
two over Unix-domain sockets (the master's own `unixsocket`, and an ambassador with
`listen: unix:/path`) against their TCP rows. An endpoint is a port or a socket path. Prefills
100,000 keys with 100-byte values, then runs every workload against every endpoint, round after
round, and prints medians. Proxy CPU is utime+stime from /proc/PID/stat around each run.

With --tls the servers also listen on TLS ports (certificates made with openssl: a CA and a
server certificate for 127.0.0.1; the replicas replicate over TLS), and the endpoints become:
direct TLS (redis-benchmark --tls), HAProxy originating TLS to the master (`ssl verify required`,
one thread), and the ambassador originating TLS (`backend_tls`) with read_policy prefer-replica
and master. The apps' side stays plaintext on loopback, as in a Pod. Needs haproxy and openssl.

With --cluster: a Redis Cluster of three masters with a replica each (`redis-cli --cluster
create`) next to the standalone master and replicas; GET and SET at -P 1 and -P 16 against
`redis-benchmark --cluster` going direct, the ambassador with `discovery: cluster`, the
standalone Redis and the ambassador in front of it: the cluster ambassador's throughput ÷
direct cluster, and its CPU per request ÷ the standalone ambassador's (goal: within 15 %),
both against the usual master + 2 replicas and against the master + 3 replicas (a third
replica joins for this run), as many read targets as the cluster's three shards have.
"""
import argparse, csv, io, os, shutil, socket, statistics, subprocess, sys, tempfile, time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# CPU sets (None: no pinning): Redis processes and redis-benchmark on one set, the proxies on
# another, for machines where the proxies should not take CPU from Redis (see --redis-cpus).
REDIS_CPUS = None
PROXY_CPUS = None


def cpu_set(text):
    """'0-1,3' → {0, 1, 3}"""
    cpus = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def pinned(cpus):
    """A preexec_fn for Popen: the child runs on `cpus` (or anywhere when None)."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(address, timeout=None):
    """A socket to a loopback port (int) or a Unix socket path (str)."""
    if isinstance(address, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(address)
        return s
    return socket.create_connection(("127.0.0.1", address), timeout=timeout)


class TLSPort(int):
    """A TLS port: redis-benchmark connects with --tls, trusting CA."""
    CA = None


class ClusterPort(int):
    """A node of a Redis Cluster: redis-benchmark runs with --cluster."""


def target(address):
    """redis-benchmark's option for an endpoint."""
    if isinstance(address, ClusterPort):
        return ["--cluster", "-p", str(address)]
    if isinstance(address, TLSPort):
        return ["-p", str(address), "--tls", "--cacert", TLSPort.CA]
    return ["-s", address] if isinstance(address, str) else ["-p", str(address)]


def make_certificates(workdir):
    """A CA and a server certificate (SAN IP:127.0.0.1) signed by it, EC P-256: (ca, cert, key)."""
    def openssl(*arguments):
        subprocess.run(["openssl", *arguments], cwd=workdir, check=True, capture_output=True)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    openssl("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "30", "-subj", "/CN=bench CA", "-out", "ca.crt")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key")
    openssl("req", "-new", "-key", "server.key", "-subj", "/CN=127.0.0.1", "-out", "server.csr")
    with open(os.path.join(workdir, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "30",
            "-sha256", "-extfile", "server.ext", "-out", "server.crt")
    return tuple(os.path.join(workdir, name) for name in ("ca.crt", "server.crt", "server.key"))


def wait_port(address, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            connect(address, timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {address}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def replication_settled(master, replicas=2, timeout=15):
    """Waits until the `replicas` replicas have acknowledged the master's whole replication stream, so no
    run starts with the previous run's SETs still being applied (its CPU would land on the next
    endpoint). Replicas acknowledge once a second: this waits up to about a second per run."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.create_connection(("127.0.0.1", master), timeout=2) as s:
            s.sendall(b"INFO replication\r\n")
            data = b""
            while b"\r\n" not in data or len(data) < data.index(b"\r\n") + 4 + int(data[1:data.index(b"\r\n")]):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        fields = dict(l.split(":", 1) for l in data.decode().split("\r\n") if ":" in l)
        offset = int(fields.get("master_repl_offset", "0"))
        acked = [int(v.split("offset=")[1].split(",")[0]) for k, v in fields.items()
                 if k.startswith("slave") and "offset=" in v]
        if len(acked) == replicas and min(acked) >= offset:
            return
        time.sleep(0.05)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Cluster:
    """A master and two replicas. With `tls` (ca, cert, key) each also has a TLS port (`tls_ports`),
    and the replicas replicate from the master's TLS port."""
    def __init__(self, workdir, tls=None):
        self.procs = []
        self.workdir = workdir
        self.tls = tls
        self.tls_ports = {}
        self.master_socket = os.path.join(workdir, "redis.sock")
        self.master = self.redis("--unixsocket", self.master_socket, "--unixsocketperm", "600")
        upstream = self.tls_ports[self.master] if tls else self.master
        self.replicas = [self.redis("--replicaof", "127.0.0.1", str(upstream)) for _ in range(2)]

    def redis(self, *extra):
        port = free_port()
        d = tempfile.mkdtemp(dir=self.workdir)
        tls = []
        if self.tls:
            self.tls_ports[port] = TLSPort(free_port())
            ca, cert, key = self.tls
            tls = ["--tls-port", str(self.tls_ports[port]), "--tls-cert-file", cert, "--tls-key-file", key,
                   "--tls-ca-cert-file", ca, "--tls-auth-clients", "no", "--tls-replication", "yes"]
        self.procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", d, "--repl-diskless-sync-delay", "0", *tls, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(REDIS_CPUS)))
        wait_port(port)
        return port

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()


class RedisCluster(Cluster):
    """Three masters with a replica each, joined by `redis-cli --cluster create`."""
    def __init__(self, workdir):
        self.procs = []
        self.workdir = workdir
        self.tls = None
        self.tls_ports = {}
        self.nodes = [self.redis("--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                                 "--cluster-config-file", "nodes.conf") for _ in range(6)]
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.nodes],
                        "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        deadline = time.time() + 30
        while time.time() < deadline:
            infos = [subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"], capture_output=True, text=True).stdout
                     for p in self.nodes]
            if all("cluster_state:ok" in i and "cluster_known_nodes:6" in i for i in infos):
                return
            time.sleep(0.2)
        raise RuntimeError("the cluster never reported cluster_state:ok")


def start(cmd, port, **kw):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=pinned(PROXY_CPUS), **kw)
    wait_port(port)
    return proc


def bench(port, test, clients, pipeline, requests, size, keyspace=100_000):
    cmd = ["redis-benchmark", *target(port), "-t", test, "-c", str(clients), "-P", str(pipeline),
           "-n", str(requests), "-d", str(size), "-r", str(keyspace), "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=pinned(REDIS_CPUS)).stdout
    rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
    if not rows:
        return None
    r = rows[-1]
    return {"rps": float(r[1]), "p50": float(r[4]), "p99": float(r[6])}


def run_mix(port, clients, requests):
    """90/10 GET/SET: two redis-benchmark processes at once, clients split 9:1; rps summed."""
    gets = max(1, clients * 9 // 10)
    sets = max(1, clients - gets)
    procs = []
    for test, c, n in (("get", gets, requests * 9 // 10), ("set", sets, requests // 10)):
        procs.append(subprocess.Popen(
            ["redis-benchmark", *target(port), "-t", test, "-c", str(c), "-n", str(n), "-d", "100",
             "-r", "100000", "--csv"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            preexec_fn=pinned(REDIS_CPUS)))
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
        results.append({"rps": float(rows[-1][1]), "p50": float(rows[-1][4]), "p99": float(rows[-1][6])})
    return {"rps": sum(r["rps"] for r in results), "p50": results[0]["p50"], "p99": max(r["p99"] for r in results)}


def prefill(port):
    # 100,000 keys key:000000000000 … with 100-byte values, as redis-benchmark -r names them.
    subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set", "-n", "300000", "-r", "100000", "-d", "100",
                    "-P", "64", "-c", "8", "-q"], capture_output=True, timeout=600, preexec_fn=pinned(REDIS_CPUS))


def idle_rss(pid, port, count=1000):
    before = rss_kib(pid)
    socks = []
    for _ in range(count):
        socks.append(connect(port))
    # One round trip on the last one, so every accept has been processed.
    socks[-1].sendall(b"*1\r\n$4\r\nPING\r\n")
    socks[-1].recv(64)
    time.sleep(0.5)
    after = rss_kib(pid)
    for s in socks:
        s.close()
    return before, after


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ambassador", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer requests per run (smoke test of the script)")
    ap.add_argument("--redis-cpus", help="CPU list (e.g. 2-7) for the Redis processes and redis-benchmark")
    ap.add_argument("--proxy-cpus", help="CPU list (e.g. 0-1) for twemproxy and the ambassadors")
    ap.add_argument("--workers", help="the ambassadors' `workers` (default: the config default, auto)")
    ap.add_argument("--loop-pause", help="the ambassadors' `loop_pause` (e.g. 20us; default: off)")
    ap.add_argument("--tls", action="store_true", help="TLS to the servers: direct TLS, HAProxy and the ambassador")
    ap.add_argument("--cluster", action="store_true", help="a Redis Cluster: direct (--cluster) against the ambassador")
    ap.add_argument("--only", help="comma-separated workload names (e.g. 'SET 64KiB,GET 64KiB'): just those")
    args = ap.parse_args()
    global REDIS_CPUS, PROXY_CPUS
    REDIS_CPUS = cpu_set(args.redis_cpus) if args.redis_cpus else None
    PROXY_CPUS = cpu_set(args.proxy_cpus) if args.proxy_cpus else None
    scale = 0.1 if args.quick else 1.0
    workdir = tempfile.mkdtemp(prefix="ra-bench-")
    tls = make_certificates(workdir) if args.tls else None
    if tls:
        TLSPort.CA = tls[0]
    cluster = Cluster(workdir, tls)
    procs = {}
    try:
        if tls:
            return run_tls(args, cluster, workdir, procs, scale)
        if args.cluster:
            return run_cluster(args, cluster, workdir, procs, scale)
        tw_port = free_port()
        tw_conf = os.path.join(workdir, "nutcracker.yml")
        with open(tw_conf, "w") as f:
            f.write(f"bench:\n  listen: 127.0.0.1:{tw_port}\n  hash: fnv1a_64\n  distribution: ketama\n"
                    f"  redis: true\n  server_connections: 1\n  auto_eject_hosts: false\n"
                    f"  servers:\n    - 127.0.0.1:{cluster.master}:1\n")
        procs["twemproxy"] = (start(["nutcracker", "-c", tw_conf, "-s", str(free_port())], tw_port), tw_port)
        for name, policy in (("ambassador", "prefer-replica"), ("ambassador-master", "master"),
                             ("ambassador-unix", "prefer-replica")):
            port = os.path.join(workdir, f"{name}.sock") if name.endswith("-unix") else free_port()
            listen = f"unix:{port}" if isinstance(port, str) else f"127.0.0.1:{port}"
            conf = os.path.join(workdir, f"{name}.yaml")
            with open(conf, "w") as f:
                f.write(f"listen: {listen}\nmaster: 127.0.0.1:{cluster.master}\nreplicas:\n"
                        f"  - 127.0.0.1:{cluster.replicas[0]}\n  - 127.0.0.1:{cluster.replicas[1]}\n"
                        f"read_policy: {policy}\nlog_level: warning\n"
                        + (f"workers: {args.workers}\n" if args.workers else "")
                        + (f"loop_pause: {args.loop_pause}\n" if args.loop_pause else ""))
            procs[name] = (start([args.ambassador, "--config", conf], port), port)
        results, workloads, idle, endpoints = measure(args, cluster, procs, scale, [("direct-unix", None, cluster.master_socket)])
        report(args, results, workloads, endpoints, reference="twemproxy", ambassadors=("ambassador", "ambassador-master"))
        print_ratios("Unix socket against loopback TCP, same read_policy (unix ÷ tcp): throughput and CPU per request",
                     results, workloads, (("direct-unix", "direct"), ("ambassador-unix", "ambassador")))
        print_idle(idle)
    finally:
        for p, _ in procs.values():
            p.terminate()
            p.wait()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def measure(args, cluster, procs, scale, extra_direct, direct=None, direct_name="direct", only=None):
    """Every workload on every endpoint (`direct`, by default the master's port, then
    `extra_direct`, then the proxies in `procs`), `args.rounds` interleaved rounds: results by
    (workload, endpoint name)."""
    direct = direct or cluster.master
    # Idle memory first, on fresh processes (later workloads leave their heaps grown).
    idle = {name: idle_rss(p.pid, port) for name, (p, port) in procs.items()}
    prefill(cluster.master)
    time.sleep(1)
    endpoints = [(direct_name, None, direct)] + extra_direct + [(n, p.pid, port) for n, (p, port) in procs.items()]
    n = lambda x: max(1000, int(x * scale))
    workloads = [
        ("SET -P1", lambda port: bench(port, "set", 50, 1, n(100_000), 100)),
        ("GET -P1", lambda port: bench(port, "get", 50, 1, n(100_000), 100)),
        ("SET -P16", lambda port: bench(port, "set", 50, 16, n(1_000_000), 100)),
        ("GET -P16", lambda port: bench(port, "get", 50, 16, n(1_000_000), 100)),
        ("90/10 GET/SET", lambda port: run_mix(port, 50, n(100_000))),
        ("GET c=1000", lambda port: bench(port, "get", 1000, 1, n(100_000), 100)),
        ("SET 64KiB", lambda port: bench(port, "set", 50, 1, n(10_000), 65536, keyspace=1000)),
        ("GET 64KiB", lambda port: bench(port, "get", 50, 1, n(10_000), 65536, keyspace=1000)),
    ]
    if only:
        workloads = [w for w in workloads if w[0] in only]
    if args.only:
        workloads = [w for w in workloads if w[0] in args.only.split(",")]
    requests = {"SET -P1": n(100_000), "GET -P1": n(100_000), "SET -P16": n(1_000_000),
                "GET -P16": n(1_000_000), "90/10 GET/SET": n(100_000), "GET c=1000": n(100_000),
                "SET 64KiB": n(10_000), "GET 64KiB": n(10_000)}
    results = {}
    for rnd in range(args.rounds):
        for wname, fn in workloads:
            # Rotate the order each round so no endpoint always runs first.
            order = endpoints[rnd % len(endpoints):] + endpoints[:rnd % len(endpoints)]
            for ename, pid, port in order:
                replication_settled(cluster.master, len(cluster.replicas))
                c0 = cpu_seconds(pid) if pid else 0
                r = fn(port)
                c1 = cpu_seconds(pid) if pid else 0
                if r is None:
                    print(f"  {wname} on {ename}: no result", file=sys.stderr)
                    continue
                r["cpu_us"] = (c1 - c0) / requests[wname] * 1e6 if pid else None
                results.setdefault((wname, ename), []).append(r)
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    return results, workloads, idle, endpoints


def report(args, results, workloads, endpoints, reference, ambassadors, direct_name="direct"):
    """The table, then each ambassador against `reference` (twemproxy, or HAProxy for TLS)."""
    print(f"\nredis-benchmark, 50 clients unless noted, -r 100000 -d 100; median of {args.rounds} interleaved rounds")
    print("÷direct: median rps over median direct rps. paired: median over rounds of rps ÷ direct rps in")
    print("the same round (robust to the machine drifting between rounds).")
    print(f"{'workload':<15} {'endpoint':<22} {'rps':>10} {'p50 ms':>7} {'p99 ms':>7} {'÷direct':>8} {'paired':>7} {'CPU µs/req':>10}")
    paired = {}
    for wname, _ in workloads:
        direct_rounds = results.get((wname, direct_name), [])
        direct = statistics.median(r["rps"] for r in direct_rounds) if direct_rounds else 0
        for ename, pid, _ in endpoints:
            rs = results.get((wname, ename))
            if not rs:
                continue
            rps = statistics.median(r["rps"] for r in rs)
            p50 = statistics.median(r["p50"] for r in rs)
            p99 = statistics.median(r["p99"] for r in rs)
            cpu = statistics.median(r["cpu_us"] for r in rs) if pid else None
            ratio = rps / direct if direct else 0
            pairs = [r["rps"] / d["rps"] for r, d in zip(rs, direct_rounds) if d["rps"]]
            paired[(wname, ename)] = statistics.median(pairs) if pairs else 0
            print(f"{wname:<15} {ename:<22} {rps:>10.0f} {p50:>7.3f} {p99:>7.3f} {ratio:>8.2f} "
                  f"{paired[(wname, ename)]:>7.2f} {(f'{cpu:.2f}' if cpu is not None else '-'):>10}")
    # The acceptance view: each ambassador row against the reference proxy in the same run.
    print(f"\nAgainst {reference} (ambassador ÷ {reference}): throughput ratio (÷direct, paired) and CPU per request")
    for wname, _ in workloads:
        tw = results.get((wname, reference))
        if not tw:
            continue
        tw_cpu = statistics.median(r["cpu_us"] for r in tw)
        tw_rps = statistics.median(r["rps"] for r in tw)
        cells = []
        for ename in ambassadors:
            rs = results.get((wname, ename))
            if not rs or not tw_rps or not paired.get((wname, reference)):
                continue
            cpu = statistics.median(r["cpu_us"] for r in rs)
            cells.append(f"{ename} {statistics.median(r['rps'] for r in rs) / tw_rps:.2f}×, "
                         f"{paired[(wname, ename)] / paired[(wname, reference)]:.2f}× paired, CPU {cpu / tw_cpu:.2f}×")
        print(f"  {wname:<15} " + " | ".join(cells))


def run_tls(args, cluster, workdir, procs, scale):
    """The TLS rows: direct TLS, HAProxy and the ambassador, each originating TLS to the servers."""
    ca = TLSPort.CA
    master_tls = cluster.tls_ports[cluster.master]
    ha_port = free_port()
    ha_conf = os.path.join(workdir, "haproxy.cfg")
    with open(ha_conf, "w") as f:
        f.write("global\n  nbthread 1\n  maxconn 4000\n"
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n"
                f"frontend redis\n  bind 127.0.0.1:{ha_port}\n  default_backend master\n"
                f"backend master\n  server m 127.0.0.1:{master_tls} ssl verify required ca-file {ca}\n")
    procs["haproxy-tls"] = (start(["haproxy", "-f", ha_conf], ha_port), ha_port)
    tls_replicas = "".join(f"  - 127.0.0.1:{cluster.tls_ports[r]}\n" for r in cluster.replicas)
    plain_replicas = "".join(f"  - 127.0.0.1:{r}\n" for r in cluster.replicas)
    # The last one reaches the same servers in plaintext: what TLS costs the ambassador itself.
    for name, policy, master, replicas, tls in (
            ("ambassador-tls", "prefer-replica", master_tls, tls_replicas, f"backend_tls:\n  ca_file: {ca}\n"),
            ("ambassador-tls-master", "master", master_tls, tls_replicas, f"backend_tls:\n  ca_file: {ca}\n"),
            ("ambassador-master", "master", cluster.master, plain_replicas, "")):
        port = free_port()
        conf = os.path.join(workdir, f"{name}.yaml")
        with open(conf, "w") as f:
            f.write(f"listen: 127.0.0.1:{port}\nmaster: 127.0.0.1:{master}\nreplicas:\n{replicas}"
                    f"{tls}read_policy: {policy}\nlog_level: warning\n"
                    + (f"workers: {args.workers}\n" if args.workers else "")
                        + (f"loop_pause: {args.loop_pause}\n" if args.loop_pause else ""))
        procs[name] = (start([args.ambassador, "--config", conf], port), port)
    results, workloads, idle, endpoints = measure(args, cluster, procs, scale, [("direct", None, cluster.master)],
                                                  direct=master_tls, direct_name="direct-tls")
    print("\nTLS between the proxy (or redis-benchmark, for direct-tls) and Redis; plaintext from redis-benchmark to the proxies.")
    report(args, results, workloads, endpoints, reference="haproxy-tls",
           ambassadors=("ambassador-tls", "ambassador-tls-master"), direct_name="direct-tls")
    print_ratios("What TLS costs (TLS ÷ plaintext to the same servers): Redis direct, and the ambassador (read_policy master)",
                 results, workloads, (("direct-tls", "direct"), ("ambassador-tls-master", "ambassador-master")))
    print_idle(idle)


def run_cluster(args, cluster, workdir, procs, scale):
    """The cluster rows: redis-benchmark --cluster direct, the ambassador in front of the cluster,
    and the standalone direct and ambassador rows of the same run for the CPU comparison: the
    ambassador in front of the master and two replicas (the other benches' topology) and
    `ambassador-3r` in front of the master and three, as many read targets as the cluster has
    shards (each shard's reads go to its replica), so the comparison holds the topology equal."""
    redis_cluster = RedisCluster(workdir)
    two = list(cluster.replicas)
    cluster.replicas.append(cluster.redis("--replicaof", "127.0.0.1", str(cluster.master)))
    try:
        for name, topology in (
                ("ambassador", f"master: 127.0.0.1:{cluster.master}\nreplicas:\n"
                               + "".join(f"  - 127.0.0.1:{r}\n" for r in two)),
                ("ambassador-3r", f"master: 127.0.0.1:{cluster.master}\nreplicas:\n"
                                  + "".join(f"  - 127.0.0.1:{r}\n" for r in cluster.replicas)),
                ("ambassador-cluster", f"discovery: cluster\ncluster_nodes:\n  - 127.0.0.1:{redis_cluster.nodes[0]}\n")):
            port = free_port()
            conf = os.path.join(workdir, f"{name}.yaml")
            with open(conf, "w") as f:
                f.write(f"listen: 127.0.0.1:{port}\n{topology}log_level: warning\n"
                        + (f"workers: {args.workers}\n" if args.workers else "")
                        + (f"loop_pause: {args.loop_pause}\n" if args.loop_pause else ""))
            procs[name] = (start([args.ambassador, "--config", conf], port), port)
        # The cluster's keys: through the ambassador (plain names, spread over the slots) and
        # as redis-benchmark --cluster names them (hash-tagged per node).
        cluster_port = procs["ambassador-cluster"][1]
        for extra in (["-p", str(cluster_port)], ["--cluster", "-p", str(redis_cluster.nodes[0])]):
            subprocess.run(["redis-benchmark", *extra, "-t", "set", "-n", "300000", "-r", "100000", "-d", "100",
                            "-P", "16", "-c", "8", "-q"], capture_output=True, timeout=600, preexec_fn=pinned(REDIS_CPUS))
        only = ("SET -P1", "GET -P1", "SET -P16", "GET -P16")
        results, workloads, idle, endpoints = measure(
            args, cluster, procs, scale, [("direct-cluster", None, ClusterPort(redis_cluster.nodes[0]))], only=only)
        print("\nA Redis Cluster (3 masters × 1 replica) and the standalone master + 2 replicas (ambassador)")
        print("or + 3 replicas (ambassador-3r), same run.")
        report(args, results, workloads, endpoints, reference="ambassador",
               ambassadors=("ambassador-3r", "ambassador-cluster"))
        print_ratios("Cluster (ambassador-cluster ÷ direct-cluster: throughput)",
                     results, workloads, (("ambassador-cluster", "direct-cluster"),))
        print("\nCPU per request, ambassador-cluster ÷ the standalone ambassador (goal ≤ 1.15); paired: the")
        print("median over rounds of the ratio within a round")
        print(f"  {'workload':<15} {'÷ 2 replicas':>14} {'paired':>7} {'÷ 3 replicas':>14} {'paired':>7}")
        for wname, _ in workloads:
            a = results.get((wname, "ambassador-cluster"))
            cells = []
            for base in ("ambassador", "ambassador-3r"):
                b = results.get((wname, base))
                if not a or not b:
                    cells.append(f"{'-':>14} {'-':>7}")
                    continue
                ratio = statistics.median(r["cpu_us"] for r in a) / statistics.median(r["cpu_us"] for r in b)
                paired = statistics.median(x["cpu_us"] / y["cpu_us"] for x, y in zip(a, b))
                cells.append(f"{ratio:>13.2f}× {paired:>6.2f}×")
            print(f"  {wname:<15} " + " ".join(cells))
    finally:
        redis_cluster.stop()


def print_ratios(title, results, workloads, pairs):
    """Per workload, each (endpoint, baseline) pair's throughput ratio and, for a proxy, CPU ratio."""
    print("\n" + title)
    for wname, _ in workloads:
        cells = []
        for ename, base in pairs:
            e, b = results.get((wname, ename)), results.get((wname, base))
            if not e or not b:
                continue
            cell = f"{ename} {statistics.median(r['rps'] for r in e) / statistics.median(r['rps'] for r in b):.2f}×"
            if e[0]["cpu_us"] is not None and b[0]["cpu_us"] is not None:
                cell += f", CPU {statistics.median(r['cpu_us'] for r in e) / statistics.median(r['cpu_us'] for r in b):.2f}×"
            cells.append(cell)
        print(f"  {wname:<15} " + " | ".join(cells))


def print_idle(idle):
    print("\nRSS of a fresh proxy process before and with 1,000 idle client connections")
    for ename, (before, after) in idle.items():
        print(f"  {ename:<21} {before:>7} KiB → {after:>7} KiB: {(after - before) * 1024 / 1000:.0f} bytes per connection")


if __name__ == "__main__":
    main()
