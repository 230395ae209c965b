#!/usr/bin/env python3
"""Bounces taken in per second through herald's inbound SMTP listener.

    python3 bench/bounces.py                 # builds the release binary first
    python3 bench/bounces.py --no-build      # uses target/release/herald as it is
    python3 bench/bounces.py --reports 10000 --connections 8 --repeat 3

The site: 20 articles and N readers (--reports, default 10,000), each mailed
one edition by `herald run` into the outbox with mail.bounce_address set, so
every reader has a delivery and a VERP envelope sender
(bounces+EDITION-READER-MAC@bounce.bench.example, the MAC made with
HERALD_SECRET as herald makes it; herald refuses an address whose MAC is
wrong, so the run checks that too). That site is made once and copied for
each run.

Each run: `herald daemon` with `[bounces] listen` on a free loopback port
(SQLite store, herald's own settings: WAL, synchronous = NORMAL), and,
once it is idle, one RFC 3464 delivery status notification per reader
(Action: failed, Status: 5.1.1, the original's headers quoted, about 1.6 KB)
sent to the reader's VERP address over --connections SMTP sessions in
parallel, each using PIPELINING (MAIL, RCPT and DATA in one write, then the
message), as Postfix does. Each report is answered 250 only once its event
is committed, so the clock stops at the last 250 and every report counts.
Then the store is checked: one event per reader, every reader suppressed.

Figures: reports per second (wall time from the first connection to the last
250), herald's CPU time over that window (user + system, from /proc), the
time from a report's final dot to its 250 (median and 99th percentile), and
herald's peak resident memory over its whole life (ru_maxrss from wait4(2)).
The table shows the median of --repeat runs and the largest peak memory.
The daemon logs at its default level (info: a line per report taken, one
per address suppressed) into a file, as an operator would run it.
The client is Python on the same 2 cores, so it takes CPU from herald; its
own CPU time is shown too. Nothing here talks to any address but loopback.
"""

import argparse
import hashlib
import hmac
import os
import re
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

SECRET = "bench-secret-0123456789abcdef0123456789"  # bench.sh's HERALD_SECRET
BOUNCE_ADDRESS = "bounces@bounce.bench.example"
NOW = bench.NOW


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def verp(edition, subscriber):
    """The envelope sender herald gives this reader's copy (src/bounces/verp.rs)."""
    mac = hmac.new(SECRET.encode(), b"verp\0" + str(edition).encode() + b"\0" + str(subscriber).encode(),
                   hashlib.sha256).digest()
    local, domain = BOUNCE_ADDRESS.split("@")
    return f"{local}+{edition}-{subscriber}-{mac[:6].hex()}@{domain}"


def dsn(n, to, reader, message_id):
    """A delivery status notification as a relay writes it, dot-stuffed for DATA."""
    text = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.bench.example>\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <report-{n}@mx.bench.example>\r\n"
        "Date: Tue, 24 Nov 2026 07:05:00 +0000\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="report-boundary"\r\n'
        "\r\n"
        "--report-boundary\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "This is the mail system at host mx.bench.example.\r\n"
        "\r\n"
        "Your message could not be delivered to one or more recipients.\r\n"
        "\r\n"
        f"<{reader}>: host mx.reader.example said: 550 5.1.1 User unknown\r\n"
        "\r\n"
        "--report-boundary\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.bench.example\r\n"
        "Arrival-Date: Tue, 24 Nov 2026 07:00:01 +0000\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {reader}\r\n"
        f"Original-Recipient: rfc822;{reader}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Remote-MTA: dns; mx.reader.example\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <" + reader + ">: Recipient address rejected: User unknown\r\n"
        "\r\n"
        "--report-boundary\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        f"Return-Path: <{to}>\r\n"
        "From: The Harbour Gazette <digest@news.example.com>\r\n"
        f"To: {reader}\r\n"
        "Subject: The Morning Digest, 2026-11-24: 20 new articles\r\n"
        f"Message-ID: {message_id}\r\n"
        "Date: Tue, 24 Nov 2026 07:00:00 +0000\r\n"
        "\r\n"
        "--report-boundary--\r\n"
    )
    return re.sub(rb"(?m)^\.", b"..", text.encode())


def prepare(binary, readers):
    """A site whose every reader was mailed one edition; the reports to send."""
    site = bench.make_site(20, readers, binary)
    env = {"HERALD_MAIL_BOUNCE_ADDRESS": BOUNCE_ADDRESS}
    _, _, out = bench.sh([binary, "run", "--now", NOW], site, env)
    assert f"{readers} sent" in out, out
    shutil.rmtree(os.path.join(site, "outbox"))
    db = sqlite3.connect(os.path.join(site, "herald.db"))
    rows = db.execute(
        "SELECT d.edition, d.subscriber, s.email, d.message_id FROM deliveries d "
        "JOIN subscribers s ON s.id = d.subscriber WHERE d.state = 'sent' ORDER BY d.subscriber"
    ).fetchall()
    db.close()
    assert len(rows) == readers, f"{len(rows)} deliveries for {readers} readers"
    reports = [(verp(e, s), dsn(n, verp(e, s), email, mid)) for n, (e, s, email, mid) in enumerate(rows)]
    return site, reports


def reply(stream):
    """One SMTP reply: (code, text)."""
    lines = []
    while True:
        line = stream.readline()
        if not line:
            raise ConnectionError("the listener closed the connection")
        lines.append(line.decode(errors="replace").rstrip())
        if len(line) < 4 or line[3:4] != b"-":
            return int(lines[-1][:3]), "\n".join(lines)


def session(port, reports, latencies, errors):
    """One SMTP session sending `reports`, pipelining MAIL, RCPT and DATA."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = s.makefile("rb")
            code, text = reply(stream)
            assert code == 220, text
            s.sendall(b"EHLO mx.bench.example\r\n")
            code, text = reply(stream)
            assert code == 250 and "PIPELINING" in text, text
            for to, body in reports:
                s.sendall(f"MAIL FROM:<> SIZE={len(body)}\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode())
                answers = [reply(stream) for _ in range(3)]
                if [a[0] for a in answers] != [250, 250, 354]:
                    raise AssertionError(f"for {to}: {answers}")
                s.sendall(body + b".\r\n")
                sent = time.perf_counter()
                code, text = reply(stream)
                latencies.append(time.perf_counter() - sent)
                if code != 250:
                    raise AssertionError(f"for {to}: {text}")
            s.sendall(b"QUIT\r\n")
            reply(stream)
    except Exception as e:  # reported by the caller
        errors.append(repr(e))


def wait_idle(pid, limit=120):
    """Waits until the daemon's start-up work (collect, publish) is over."""
    deadline = time.time() + limit
    before = proc_cpu(pid)
    while time.time() < deadline:
        time.sleep(0.5)
        now = proc_cpu(pid)
        if now - before < 0.02:
            return
        before = now
    sys.exit("herald daemon did not settle within two minutes")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(binary, prepared, reports, connections):
    site = tempfile.mkdtemp(prefix="herald-bench-bounces-")
    shutil.rmtree(site)
    shutil.copytree(prepared, site)
    smtp, http = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HERALD_SECRET": SECRET,
        "HERALD_MAIL_BOUNCE_ADDRESS": BOUNCE_ADDRESS,
        "HERALD_BOUNCES_LISTEN": f"127.0.0.1:{smtp}",
    }
    os.sync()
    log = open(os.path.join(site, "daemon.log"), "w")
    daemon = subprocess.Popen([binary, "daemon", "--listen", f"127.0.0.1:{http}"], cwd=site, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", smtp), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or daemon.poll() is not None:
                    sys.exit("herald daemon did not listen:\n" + open(log.name).read())
                time.sleep(0.1)
        wait_idle(daemon.pid)
        shares = [reports[i::connections] for i in range(connections)]
        latencies, errors = [], []
        threads = [threading.Thread(target=session, args=(smtp, share, latencies, errors)) for share in shares]
        client_before = time.process_time()
        cpu_before = proc_cpu(daemon.pid)
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        cpu = proc_cpu(daemon.pid) - cpu_before
        client = time.process_time() - client_before
        if errors:
            sys.exit(f"{len(errors)} session(s) failed, the first: {errors[0]}\n" + open(log.name).read()[-4000:])
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(daemon.pid, 0)
        log.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"herald daemon exited with {status}:\n" + open(log.name).read()[-4000:])
    db = sqlite3.connect(os.path.join(site, "herald.db"))
    actions = dict(db.execute("SELECT action, COUNT(*) FROM bounce_events GROUP BY action").fetchall())
    suppressed = db.execute("SELECT COUNT(*) FROM suppressions").fetchone()[0]
    db.close()
    assert actions == {"suppressed": len(reports)}, actions
    assert suppressed == len(reports), suppressed
    shutil.rmtree(site)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return len(reports) / wall, wall, cpu, client, p50, p99, usage.ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", help="use the release binary as it is")
    parser.add_argument("--reports", type=int, default=10_000, help="readers, and reports sent (default 10,000)")
    parser.add_argument("--connections", type=int, default=8, help="SMTP sessions in parallel (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--herald", default=bench.BIN, help="the herald binary (default: the release build)")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=bench.ROOT, check=True)
    prepared, reports = prepare(args.herald, args.reports)
    size = statistics.mean(len(body) for _, body in reports)
    print(f"{os.cpu_count()} cores; {len(reports):,} reports of {size:,.0f} bytes on average", flush=True)
    runs = []
    try:
        for i in range(args.repeat):
            result = one_run(args.herald, prepared, reports, args.connections)
            rate, wall, cpu, client, p50, p99, peak = result
            print(f"run {i + 1}: {rate:,.0f} reports/s ({wall:.2f} s; herald {cpu:.1f} s CPU, client {client:.1f} s;"
                  f" final dot → 250: median {p50:.1f} ms, p99 {p99:.1f} ms; peak {peak:.0f} MiB)", flush=True)
            runs.append(result)
    finally:
        shutil.rmtree(prepared)
    median = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    print(f"\nDSNs through the SMTP listener: {len(reports):,} reports over {args.connections} connections, "
          f"SQLite; median of {args.repeat}\n")
    print("| reports/s (median) | each run | herald CPU | CPU per 1,000 | final dot → 250 (p50 / p99) | peak memory (max) |")
    print("|---|---|---|---|---|---|")
    print(f"| {median(0):,.0f} | {', '.join(f'{r[0]:,.0f}' for r in runs)} | {median(2):.1f} s"
          f" | {median(2) * 1000 / len(reports) * 1000:.0f} ms | {median(4):.1f} ms / {median(5):.1f} ms"
          f" | {max(r[6] for r in runs):.0f} MiB |")


if __name__ == "__main__":
    main()
