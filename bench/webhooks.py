#!/usr/bin/env python3
"""Bounce events taken in through a webhook: events per second, CPU, memory.

    python3 bench/webhooks.py                     # builds, then 3 runs of 10,000 events
    python3 bench/webhooks.py --no-build --events 20000 --connections 8 --repeat 5
    python3 bench/webhooks.py --herald OLD/herald # another build

A site of 3 articles and N readers (default 10,000) is mailed once by
`herald run` into its outbox (not timed), so every reader has a sent
delivery and the store acts on reports about them. Then, --repeat times, on
a fresh copy of that store: `herald serve` (release build) on a free
loopback port with the generic webhook on (HERALD_BOUNCES_WEBHOOK_SECRET),
and N signed requests to POST /webhooks/generic, one event each (one reader
each: 70% hard bounces, 20% soft, 10% complaints), sent over --connections
kept-alive connections in parallel. Every request is built and signed before
the clock starts; the clock runs from the first request to the last answer.
Each answer must be 200, and the store must hold N events afterwards.

Figures: events/s (median, and each run), herald's CPU time during the
posting (user + system, from /proc), and its peak resident memory (VmHWM).
SQLite is herald's own setting: WAL, synchronous = NORMAL. Nothing talks to
any address but loopback.
"""

import argparse
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the shared helpers of bench/run.py)

SECRET = "bench-webhook-secret-0123456789abcdef"


def build():
    subprocess.run(["cargo", "build", "--release", "--locked"], cwd=bench.ROOT, check=True)


def requests_for(n, port, repeat):
    """Every request's bytes, signed, in order."""
    now = str(int(time.time()))
    out = []
    for i in range(n):
        kind = "complaint" if i % 10 == 0 else "soft" if i % 10 in (1, 2) else "hard"
        event = {"id": f"bench-{repeat}-{i}", "type": kind, "email": f"reader{i}@example.com"}
        if kind != "complaint":
            event["status"] = "5.1.1" if kind == "hard" else "4.2.2"
            event["diagnostic"] = f"550 {event['status']} reader{i}: no such user here"
        body = json.dumps({"events": [event]}).encode()
        mac = hmac.new(SECRET.encode(), now.encode() + b"." + body, hashlib.sha256).hexdigest()
        head = (
            f"POST /webhooks/generic HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Herald-Timestamp: {now}\r\nX-Herald-Signature: sha256={mac}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


def read_answer(sock, buffer):
    """One HTTP/1.1 answer from a kept-alive connection: (status, rest of buffer)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("herald closed a kept-alive connection")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("herald closed a connection mid-answer")
        rest += chunk
    return status, rest[length:]


def post_all(port, requests, connections):
    """Sends `requests` over `connections` sockets in parallel; wall seconds."""
    failures = []
    shares = [requests[k::connections] for k in range(connections)]
    ready = threading.Barrier(connections + 1)

    def worker(share):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ready.wait()
            buffer = b""
            for request in share:
                sock.sendall(request)
                status, buffer = read_answer(sock, buffer)
                if status != 200:
                    failures.append(status)

    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} answers were not 200: {sorted(set(failures))}")
    return wall


def start_serve(binary, site, port):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HERALD_SECRET": "bench-secret-0123456789abcdef0123456789",
        "HERALD_BOUNCES_WEBHOOK_SECRET": SECRET,
    }
    log = open(os.path.join(site, "serve.log"), "w")
    server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}"], cwd=site, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.05)
    raise SystemExit(f"herald serve did not start; see {site}/serve.log")


def store_files(site):
    return [f for f in ("herald.db", "herald.db-wal", "herald.db-shm") if os.path.exists(os.path.join(site, f))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-build", action="store_true", help="use the release binary as it is")
    parser.add_argument("--herald", default=bench.BIN, help="the herald binary (default: the release build)")
    parser.add_argument("--events", type=int, default=10_000, help="events (and readers) per run")
    parser.add_argument("--connections", type=int, default=4, help="kept-alive connections in parallel")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.no_build:
        build()

    site = bench.make_site(3, args.events, args.herald)
    bench.sh([args.herald, "run", "--now", bench.NOW], site, timeout=1800)
    pristine = tempfile.mkdtemp(prefix="herald-bench-store-")
    for f in store_files(site):
        shutil.copy2(os.path.join(site, f), pristine)
    shutil.rmtree(os.path.join(site, "outbox"), ignore_errors=True)

    runs = []
    for repeat in range(args.repeat):
        for f in store_files(site):
            os.remove(os.path.join(site, f))
        for f in os.listdir(pristine):
            shutil.copy2(os.path.join(pristine, f), site)
        os.sync()
        port = bench.free_port()
        requests = requests_for(args.events, port, repeat)
        server = start_serve(args.herald, site, port)
        cpu_before = bench.proc_cpu_seconds(server.pid)
        wall = post_all(port, requests, args.connections)
        cpu = bench.proc_cpu_seconds(server.pid) - cpu_before
        peak = bench.proc_rss_mib(server.pid, "VmHWM")
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        with sqlite3.connect(os.path.join(site, "herald.db")) as db:
            stored = db.execute("SELECT COUNT(*) FROM bounce_events").fetchone()[0]
            suppressed = db.execute("SELECT COUNT(*) FROM suppressions").fetchone()[0]
        if stored != args.events:
            raise SystemExit(f"the store holds {stored} events, not {args.events}")
        runs.append((args.events / wall, cpu, peak, suppressed))
        print(f"run {repeat + 1}: {args.events / wall:,.0f} events/s, {cpu:.1f} s CPU, "
              f"{peak:.0f} MiB peak, {suppressed:,} addresses suppressed", file=sys.stderr)

    rates = [r[0] for r in runs]
    print(f"\nPOST /webhooks/generic, {args.events:,} signed events (one per request) about "
          f"{args.events:,} mailed readers, {args.connections} kept-alive connections, SQLite; "
          f"median of {args.repeat}\n")
    print("| events/s (median) | each run | herald CPU (median) | CPU per 1,000 events | peak memory (max) |")
    print("|---|---|---|---|---|")
    cpu = statistics.median(r[1] for r in runs)
    print(f"| {statistics.median(rates):,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} | {cpu:.1f} s "
          f"| {cpu / args.events * 1000 * 1000:.0f} ms | {max(r[2] for r in runs):.0f} MiB |")
    shutil.rmtree(site, ignore_errors=True)
    shutil.rmtree(pristine, ignore_errors=True)


if __name__ == "__main__":
    main()
