#!/usr/bin/env python3
"""`herald collect` against upstream feeds built to make an XML reader slow or
hungry, beside an ordinary feed.

    python3 bench/hostile_xml.py                  # builds target/release/herald first
    python3 bench/hostile_xml.py --no-build --count 100000

Each feed is RSS 2.0 with one item, served from memory on loopback; its root
element carries --count (default 50,000):

  ordinary      nothing: the floor (a start, a fetch, a parse, a store)
  duplicates    attributes of one name, ` a="1" a="1" …` (RUSTSEC-2026-0194)
  distinct      distinct attributes, ` a0="1" a1="1" …`
  namespaces    namespace declarations, ` xmlns:n0="urn:0" …` (RUSTSEC-2026-0195)

For each, a fresh site (`herald init`, its sample articles removed) gets the
one feed as its only source and runs `herald collect --now …` under GNU time
(/usr/bin/time); the table shows the median wall time, the CPU time and the
largest peak resident memory (GNU time's %M, herald's ru_maxrss) of --repeat
runs, and what the collect said (an
article collected, or the source refused and why). The tests
(tests/it/hostile_xml.rs) assert the outcome; this measures its cost. Nothing
here talks to the network.
"""

import argparse
import http.server
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import BIN, NOW, ROOT  # noqa: E402

ENV = {"PATH": os.environ.get("PATH", ""), "HERALD_SECRET": "bench-secret-0123456789abcdef0123456789"}


def feeds(count):
    def feed(title, attrs):
        slug = title.lower()
        return (
            f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"{attrs}><channel><title>Hostile</title>'
            f"<link>https://hostile.example.org/</link><description>d</description>\n"
            f"<item><title>{title}</title><link>https://hostile.example.org/{slug}</link><guid>{slug}</guid>"
            f"<pubDate>Mon, 23 Nov 2026 08:00:00 GMT</pubDate><description>Text.</description></item>"
            f"</channel></rss>\n"
        ).encode()

    return {
        "ordinary": feed("Ordinary", ""),
        "duplicates": feed("Duplicates", ' a="1"' * count),
        "distinct": feed("Distinct", "".join(f' a{i}="1"' for i in range(count))),
        "namespaces": feed("Namespaces", "".join(f' xmlns:n{i}="urn:{i}"' for i in range(count))),
    }


def serve(bodies):
    """Serves /NAME → bodies[NAME] on a loopback port; returns the server."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = bodies.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def site_with(binary, name, port):
    site = tempfile.mkdtemp(prefix="herald-hostile-")
    subprocess.run([binary, "init", "."], cwd=site, env=ENV, check=True, stdout=subprocess.DEVNULL)
    content = os.path.join(site, "content")
    shutil.rmtree(content)
    os.makedirs(content)
    with open(os.path.join(site, "herald.toml"), "a") as f:
        f.write(
            f'\n[[sources]]\nname = "{name}"\nkind = "feed"\n'
            f'url = "http://127.0.0.1:{port}/{name}"\nallow_private = true\n'
        )
    return site


def collect(binary, site, timeout):
    """Runs `herald collect`; returns (wall s, CPU s, peak MiB, exit code, what it said).

    The peak is the one GNU time reports for herald: the ru_maxrss that wait4
    gives this script counts the pages of the forked Python process (which
    holds the feeds) before herald's exec, and so grows with --count."""
    os.sync()
    peak_file = os.path.join(site, "peak-kib")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        command = ["/usr/bin/time", "-f", "%M", "-o", peak_file, binary, "collect", "--now", NOW]
        proc = subprocess.Popen(command, cwd=site, env=ENV, stdout=out, stderr=err)
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        watchdog.cancel()
        out.seek(0), err.seek(0)
        said = out.read().decode() + err.read().decode()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        sys.exit(f"herald collect in {site} ended with {code} after {wall:.1f} s:\n{said}")
    with open(peak_file) as f:
        peak = int(f.read().split()[-1]) / 1024.0
    return wall, rusage.ru_utime + rusage.ru_stime, peak, code, outcome(said)


def outcome(said):
    """"1 new article", or why the source was refused."""
    for line in said.splitlines():
        if line.startswith("warning: source"):
            return line.split(": ", 2)[-1].split(" (fetching")[0]
    for line in said.splitlines():
        if line.startswith("collected"):
            return line.split()[1] + " new article(s)"
    return said.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", help="use the release binary as it is")
    parser.add_argument("--herald", default=BIN, help="the herald binary (default: the release build)")
    parser.add_argument("--count", type=int, default=50_000, help="attributes or declarations (default 50,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per feed (default 3)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds before a collect counts as hung")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    bodies = feeds(args.count)
    server = serve(bodies)
    port = server.server_address[1]
    rows, sites = [], []
    try:
        for name, body in bodies.items():
            walls, cpus, peaks = [], [], []
            for _ in range(args.repeat):
                site = site_with(args.herald, name, port)
                sites.append(site)
                wall, cpu, peak, code, said = collect(args.herald, site, args.timeout)
                walls.append(wall), cpus.append(cpu), peaks.append(peak)
            print(f"{name}: {', '.join(f'{w:.3f}' for w in walls)} s; exit {code}; {said}", flush=True)
            rows.append((name, len(body), walls, cpus, peaks, said))
    finally:
        server.shutdown()
        for site in sites:
            shutil.rmtree(site)
    print(f"\n{os.cpu_count()} cores; {args.count:,} attributes or declarations; median of {args.repeat} runs\n")
    print("| feed | size | wall time (median) | each run | CPU (median) | peak memory (max) | outcome |")
    print("|---|---|---|---|---|---|---|")
    for name, size, walls, cpus, peaks, said in rows:
        runs = ", ".join(f"{w:.3f}" for w in walls)
        print(
            f"| {name} | {size / 1024:,.1f} KiB | {statistics.median(walls):.3f} s | {runs}"
            f" | {statistics.median(cpus):.3f} s | {max(peaks):.0f} MiB | {said} |"
        )


if __name__ == "__main__":
    main()
