#!/usr/bin/env python3
"""herald's crash benchmark: kill -9 `herald deliver` at random points of a
large send, rerun it until done, and count what the SMTP server received.

    python3 bench/crash.py                          # 100,000 subscribers, 20 kills
    python3 bench/crash.py --subscribers 20000 --kills 5 --seed 7

It builds the release binary (unless --no-build), makes a site with a small
digest (4 articles, about 8 KB a message), composes one edition, and starts
Postfix's smtp-sink on a free loopback port dumping every message into its
own file. Then, for each kill point (drawn at random, sorted), it starts
`herald deliver`, waits until the sink holds that many messages and sends
SIGKILL. A last run finishes the job and one more must send nothing. Finally
it reads every dump: a reader missing is a lost message; a reader with two
copies is a duplicate, which is allowed only for the messages in flight at a
kill (at most mail.concurrency per kill) and must carry the same Message-ID.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the shared helpers of bench/run.py)

NOW = bench.NOW


def count(folder):
    with os.scandir(folder) as it:
        return sum(1 for _ in it)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=bench.ROOT, check=True)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    n = args.subscribers

    site = bench.make_site(4, n)
    bench.sh([bench.BIN, "collect", "--now", NOW], site)
    bench.sh([bench.BIN, "compose", "--now", NOW], site)
    dump = tempfile.mkdtemp(prefix="herald-crash-dump-")
    os.chmod(dump, 0o777)  # smtp-sink writes as nobody
    port = bench.free_port()
    sink = subprocess.Popen(
        ["/usr/sbin/smtp-sink", "-u", "nobody", "-d", f"{dump}/m.", f"127.0.0.1:{port}", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    env = dict(
        PATH=os.environ.get("PATH", ""),
        HERALD_SECRET="bench-secret-0123456789abcdef0123456789",
        HERALD_MAIL_TRANSPORT="smtp",
        HERALD_MAIL_SMTP_URL=f"smtp://127.0.0.1:{port}",
        HERALD_MAIL_CONCURRENCY=str(args.concurrency),
    )
    deliver = [bench.BIN, "deliver", "--now", NOW]
    marks = sorted(rng.sample(range(n // 100, n - n // 100), args.kills))
    kills = 0
    started = time.perf_counter()
    try:
        for mark in marks:
            p = subprocess.Popen(deliver, cwd=site, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while p.poll() is None and count(dump) < mark:
                time.sleep(0.02)
            if p.poll() is not None:
                break
            p.kill()  # SIGKILL
            p.wait()
            kills += 1
        done = subprocess.run(deliver, cwd=site, env=env, capture_output=True, text=True)
        again = subprocess.run(deliver, cwd=site, env=env, capture_output=True, text=True)
        assert "0 sent, 0 deferred, 0 failed" in again.stdout, again.stdout + again.stderr
        elapsed = time.perf_counter() - started
        time.sleep(1)
    finally:
        sink.kill()
        sink.wait()

    seen = {}
    partial = 0
    for entry in os.scandir(dump):
        with open(entry.path, "rb") as f:
            raw = f.read()
        # smtp-sink writes its dumps with bare LF line ends.
        raw = raw.replace(b"\r\n", b"\n")
        head = raw.split(b"\n\n", 1)[0].decode("utf-8", "replace")
        fields = {}
        for line in head.replace("\n ", " ").replace("\n\t", " ").split("\n"):
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        boundary = fields.get("content-type", "").partition('boundary="')[2].partition('"')[0]
        if not boundary or f"--{boundary}--".encode() not in raw:
            partial += 1  # a transaction cut by a kill: never accepted
            continue
        to = fields.get("to", "").rpartition("<")[2].rstrip(">")
        seen.setdefault(to, []).append(fields.get("message-id", ""))
    expected = {f"reader{i}@example.com" for i in range(n)}
    missing = len(expected - set(seen))
    duplicates = sum(len(ids) - 1 for ids in seen.values())
    mismatched = sum(1 for ids in seen.values() if len(set(ids)) > 1)
    bound = kills * args.concurrency
    print(f"\nseed {seed}; {n:,} subscribers; {kills} kill -9; concurrency {args.concurrency}; {elapsed:.1f} s in all")
    print(f"last run: {done.stdout.strip()}")
    print("| subscribers | kills | missing | duplicates | bound (kills × concurrency) | duplicates with another Message-ID | cut transactions |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {n:,} | {kills} | {missing} | {duplicates} | {bound} | {mismatched} | {partial} |")
    shutil.rmtree(dump)
    shutil.rmtree(site)
    if missing or mismatched or duplicates > bound:
        sys.exit("FAILED: see the table")


if __name__ == "__main__":
    main()
