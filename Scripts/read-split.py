#!/usr/bin/env python3
"""Read split and stale reads under read_your_writes (a measurement, not a test).

Starts a master and two replicas, then for each read_your_writes mode an ambassador (the release
build) in front of them, and runs CLIENTS connections for SECONDS each doing a 90/10 GET/SET loop,
one request at a time: each SET writes a counter value to one of the connection's own keys, each
GET reads one of its own keys and checks it sees at least the value it last wrote there (a stale
read otherwise). Reports, per mode: requests, the share of GETs the replicas served (from their
INFO commandstats), and stale reads.

    Scripts/read-split.py [--clients 20] [--seconds 5] [--modes session,off]
"""
import argparse, os, random, shutil, socket, subprocess, sys, tempfile, threading, time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def command(self, *args):
        out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args))
        self.sock.sendall(out)
        return self.reply()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b":":
            return int(rest)
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        return rest.decode()


def get_calls(port):
    stats = Client(port).command("INFO", "commandstats")
    for line in stats.splitlines():
        if line.startswith("cmdstat_get:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if Client(port).command("PING") == "PONG":
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers on {port}")


def run_mode(binary, workdir, master, replicas, mode, clients, seconds):
    port = free_port()
    conf = os.path.join(workdir, f"ryw-{mode}.yaml")
    with open(conf, "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\nmaster: 127.0.0.1:{master}\nreplicas:\n"
                + "".join(f"  - 127.0.0.1:{r}\n" for r in replicas)
                + f"read_your_writes: {mode}\nlog_level: warning\nworkers: 1\n")
    proc = subprocess.Popen([binary, "--config", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        time.sleep(0.5)
        before = [get_calls(p) for p in [master] + replicas]
        totals = {"gets": 0, "sets": 0, "stale": 0}
        lock = threading.Lock()
        stop = time.time() + seconds

        def loop(index):
            c = Client(port)
            rng = random.Random(index)
            written = {}
            gets = sets = stale = 0
            counter = 0
            while time.time() < stop:
                key = f"rs:{index}:{rng.randrange(50)}"
                if rng.random() < 0.1:
                    counter += 1
                    c.command("SET", key, str(counter))
                    written[key] = counter
                    sets += 1
                else:
                    value = c.command("GET", key)
                    gets += 1
                    if key in written and (value is None or int(value) < written[key]):
                        stale += 1
            with lock:
                totals["gets"] += gets
                totals["sets"] += sets
                totals["stale"] += stale

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = [get_calls(p) for p in [master] + replicas]
        served = [a - b for a, b in zip(after, before)]
        replica_share = sum(served[1:]) / max(1, sum(served))
        print(f"read_your_writes {mode:8}  {totals['gets'] + totals['sets']:7} requests  "
              f"GETs served by replicas {replica_share * 100:5.1f}% (master {served[0]}, replicas {served[1:]})  "
              f"stale reads {totals['stale']}")
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--modes", default="session,off")
    ap.add_argument("--ambassador", default=".build/release/redis-ambassador")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="ra-split-")
    procs = []
    try:
        master = free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(master), "--bind", "127.0.0.1", "--save", "",
                                       "--dir", workdir], stdout=subprocess.DEVNULL))
        replicas = []
        for i in range(2):
            port = free_port()
            procs.append(subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                           "--dir", workdir, "--dbfilename", f"r{i}.rdb",
                                           "--replicaof", "127.0.0.1", str(master)], stdout=subprocess.DEVNULL))
            replicas.append(port)
        for port in [master] + replicas:
            wait_port(port)
        for port in replicas:  # until the replication link is up
            deadline = time.time() + 30
            while Client(port).command("ROLE")[3] != "connected" and time.time() < deadline:
                time.sleep(0.1)
        for mode in args.modes.split(","):
            run_mode(args.ambassador, workdir, master, replicas, mode, args.clients, args.seconds)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
