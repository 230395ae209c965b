#!/usr/bin/env python3
"""Signed mail at full speed: `herald deliver` over SMTP to Postfix's smtp-sink
on loopback, unsigned and signed with DKIM (RSA-2048, Ed25519, and both),
for a small digest (the example site's, about 7 KB) and a large one (20
articles, about 30 KB), side by side with Postfix's smtp-source sending as
many messages of the same size over 8 reused sessions to the same sink in
the same run.

    python3 bench/signed.py                       # builds the release binary first
    python3 bench/signed.py --no-build --subscribers 20000 --sizes 7
    python3 bench/signed.py --perf                # also a perf profile of each herald run

Prints msgs/s and CPU time per message (user + system of the sending process,
from wait4(2)) for each run, and a Markdown table for BENCHMARKS.md. smtp-sink
only counts (no dump), so the figures are the sender's. Needs smtp-sink and
smtp-source (Debian's postfix), openssl, and perf for --perf.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the helpers of bench/run.py)

MODES = {
    "unsigned": [],
    "RSA-2048": ["rsa"],
    "Ed25519": ["ed25519"],
    "dual": ["ed25519", "rsa"],
}


def small_site(subscribers):
    """The example site (`herald init`: its four articles and templates), with
    `subscribers` readers."""
    site = tempfile.mkdtemp(prefix="herald-bench-")
    bench.sh([bench.BIN, "init", "."], site)
    with open(os.path.join(site, "subscribers", "daily.csv"), "w") as f:
        f.write("email,name\n")
        for i in range(subscribers):
            f.write(f"reader{i}@example.com,Reader {i}\n")
    return site


def add_keys(site, algorithms):
    """Writes a fresh key per algorithm and a [[mail.dkim]] table for each."""
    tables = []
    for algorithm in algorithms:
        path = f"dkim-{algorithm}.pem"
        if algorithm == "rsa":
            cmd = ["openssl", "genrsa", "-out", path, "2048"]
        else:
            cmd = ["openssl", "genpkey", "-algorithm", "ed25519", "-out", path]
        subprocess.run(cmd, cwd=site, check=True, capture_output=True)
        tables.append(f'\n[[mail.dkim]]\nselector = "bench-{algorithm}"\nkey_file = "{path}"\nalgorithm = "{algorithm}"\n')
    with open(os.path.join(site, "herald.toml"), "a") as f:
        f.write("".join(tables))


def message_size(site):
    """The size of one reader's message, from a copy sent to the outbox."""
    outbox = os.path.join(site, "size-probe")
    env = {"HERALD_MAIL_OUTBOX_DIR": outbox}
    bench.sh([bench.BIN, "deliver", "--now", bench.NOW, "--test", "probe@example.com", "--list", "daily"], site, env)
    files = [os.path.join(outbox, f) for f in os.listdir(outbox)]
    size = os.path.getsize(files[0])
    shutil.rmtree(outbox)
    return size


def herald_run(size_name, mode, subscribers, port, perf):
    site = small_site(subscribers) if size_name == "7" else bench.make_site(20, subscribers)
    add_keys(site, MODES[mode])
    bench.sh([bench.BIN, "collect", "--now", bench.NOW], site)
    bench.sh([bench.BIN, "compose", "--now", bench.NOW], site)
    size = message_size(site)
    env = {"HERALD_MAIL_TRANSPORT": "smtp", "HERALD_MAIL_SMTP_URL": f"smtp://127.0.0.1:{port}"}
    cmd = [bench.BIN, "deliver", "--now", bench.NOW]
    if perf:
        data = os.path.join(bench.ROOT, "target", f"perf-{size_name}k-{mode}.data")
        cmd = ["perf", "record", "-F", "999", "-g", "-o", data, "--"] + cmd
    wall, peak, out = bench.sh(cmd, site, env)
    assert f"{subscribers} sent" in out, out
    cpu = bench.CPU[-1]
    shutil.rmtree(site)
    return size, wall, cpu, peak


def smtp_source_run(size, subscribers, port):
    wall, peak, _ = bench.sh(
        ["/usr/sbin/smtp-source", "-d", "-s", "8", "-m", str(subscribers), "-l", str(size), f"127.0.0.1:{port}"],
        bench.ROOT,
    )
    return wall, bench.CPU[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", help="use target/release/herald as it is")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--sizes", default="7,30", help="digest sizes to run: 7 (the example site), 30 (20 articles)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"signing modes, of {', '.join(MODES)}")
    parser.add_argument("--perf", action="store_true", help="record a perf profile of each herald run under target/")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=bench.ROOT, check=True)
    n = args.subscribers
    rows = []
    sink, port = bench.smtp_sink()
    try:
        for size_name in args.sizes.split(","):
            sizes = []
            results = {}
            for mode in args.modes.split(","):
                size, wall, cpu, peak = herald_run(size_name, mode, n, port, args.perf)
                sizes.append(size)
                results[mode] = (wall, cpu, peak)
                print(f"{size_name} KB, {mode}: {n / wall:,.0f} msgs/s, {cpu / n * 1e6:.0f} µs CPU a message, {size:,} bytes", flush=True)
            # smtp-source sends messages of the unsigned size (signatures add
            # about 0.3 KB each).
            size = min(sizes)
            wall, cpu = smtp_source_run(size, n, port)
            print(f"{size_name} KB, smtp-source -l {size}: {n / wall:,.0f} msgs/s, {cpu / n * 1e6:.0f} µs CPU a message", flush=True)
            reference = n / wall
            unsigned = n / results["unsigned"][0] if "unsigned" in results else None
            for mode, (w, c, p) in results.items():
                rate = n / w
                versus = f"{rate / unsigned * 100:.0f} %" if unsigned and mode != "unsigned" else ""
                rows.append((f"herald, {mode}", size_name, rate, c / n * 1e6, f"{rate / reference * 100:.0f} %", versus, p))
            rows.append((f"smtp-source -d -s 8 -l {size}", size_name, reference, cpu / n * 1e6, "100 %", "", None))
    finally:
        sink.kill()
        sink.wait()
    print(f"\n{os.cpu_count()} cores; {n:,} messages each\n")
    print("| sender | digest | msgs/s | CPU per message | of smtp-source | of unsigned | peak memory |")
    print("|---|---|---|---|---|---|---|")
    for name, size_name, rate, cpu, ref, versus, peak in rows:
        memory = f"{peak:.0f} MiB" if peak else ""
        print(f"| {name} | ~{size_name} KB | {rate:,.0f} | {cpu:.0f} µs | {ref} | {versus} | {memory} |")


if __name__ == "__main__":
    main()
