#!/usr/bin/env python3
"""A crawler walks the whole archive while feed readers poll /feed.xml.

    python3 bench/crawl.py                         # builds target/release/herald first
    python3 bench/crawl.py --no-build --bin OLD/herald --label before

Makes a site of --pages article pages (`herald init`, generated Markdown,
`herald collect` and `herald publish` with --now fixed), starts `herald serve`
on loopback and measures:

  idle     /feed.xml latency while nothing else happens (wrk, 4 connections,
           each one request every 50 ms, --seconds long)
  crawl    every file under public/ fetched once by --clients threads over
           kept-alive connections asking for `Accept-Encoding: br, gzip`
           (each file's first request: the server compresses it), while the
           same wrk probe polls /feed.xml for as long as the crawl lasts
  memory   the server's resident memory (VmRSS) after start and one feed
           request, after the crawl, and its peak (VmHWM)

The probe sends a fixed rate, not as many requests as it can, so it measures
the latency a feed reader sees and leaves the two cores to the crawl and the
server. wrk, the crawler and the server share the machine. Nothing here talks
to the network.
"""

import argparse
import http.client
import os
import queue
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import BIN, NOW, ROOT, article, free_port, proc_rss_mib  # noqa: E402

PROBE_LUA = "function delay() return 50 end\n"


def make_site(binary, pages):
    site = tempfile.mkdtemp(prefix="herald-crawl-")
    run([binary, "init", "."], site)
    content = os.path.join(site, "content")
    shutil.rmtree(content)
    os.makedirs(content)
    rng = random.Random(7)
    for i in range(pages):
        with open(os.path.join(content, f"post-{i:05d}.md"), "w") as f:
            f.write(article(i, rng))
    run([binary, "collect", "--now", NOW], site)
    run([binary, "publish", "--now", NOW], site)
    return site


def run(args, cwd, env=None):
    full_env = {"PATH": os.environ.get("PATH", ""), "HERALD_SECRET": "bench-secret-0123456789abcdef0123456789"}
    full_env.update(env or {})
    subprocess.run(args, cwd=cwd, env=full_env, check=True, stdout=subprocess.DEVNULL)


def files_under(public):
    """Every file herald serves, as URL paths (pages as their folder with a slash)."""
    paths = []
    for folder, dirs, files in os.walk(public):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(folder, name), public).replace(os.sep, "/")
            paths.append("/" + (rel[: -len("index.html")] if name == "index.html" else rel))
    return paths


def crawl(port, paths, clients):
    """Fetches every path once; returns (seconds, bytes received, statuses seen)."""
    todo = queue.Queue()
    for p in paths:
        todo.put(p)
    received, statuses, lock = [0], {}, threading.Lock()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        got, seen = 0, {}
        while True:
            try:
                path = todo.get_nowait()
            except queue.Empty:
                break
            conn.request("GET", path, headers={"Accept-Encoding": "br, gzip", "User-Agent": "bench-crawler"})
            r = conn.getresponse()
            got += len(r.read())
            seen[r.status] = seen.get(r.status, 0) + 1
        conn.close()
        with lock:
            received[0] += got
            for k, v in seen.items():
                statuses[k] = statuses.get(k, 0) + v

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, received[0], statuses


def start_probe(port, script):
    """wrk polling /feed.xml at a fixed rate until stopped (SIGINT prints its report)."""
    return subprocess.Popen(
        ["wrk", "-t1", "-c4", "-d3600s", "--latency", "-s", script, "-H", "Accept-Encoding: br, gzip",
         f"http://127.0.0.1:{port}/feed.xml"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop_probe(probe):
    probe.send_signal(2)  # SIGINT: wrk stops and prints what it measured
    out, _ = probe.communicate(timeout=30)
    latency = {}
    for line in out.splitlines():
        m = re.match(r"\s+(50|90|99)%\s+(\S+)", line)
        if m:
            latency[m.group(1)] = m.group(2)
    count = re.search(r"(\d+) requests in", out)
    return latency, int(count.group(1)) if count else 0, out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=BIN, help="the herald binary to measure (default target/release/herald)")
    parser.add_argument("--no-build", action="store_true", help="do not build target/release/herald first")
    parser.add_argument("--pages", type=int, default=10_001, help="article pages in the site (default 10,001)")
    parser.add_argument("--clients", type=int, default=8, help="crawler connections (default 8)")
    parser.add_argument("--seconds", type=int, default=10, help="length of the idle probe (default 10)")
    parser.add_argument("--label", default="", help="a name for the table row")
    parser.add_argument("--env", action="append", default=[], help="VAR=VALUE for the server (e.g. HERALD_WEB_CACHE_BYTES=...)")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    binary = os.path.abspath(args.bin)
    print(f"building a site of {args.pages:,} articles with {binary} ...", flush=True)
    site = make_site(binary, args.pages)
    paths = files_under(os.path.join(site, "public"))
    pages = sum(1 for p in paths if p.endswith("/"))
    port = free_port()
    env = dict(os.environ, HERALD_SECRET="bench-secret-0123456789abcdef0123456789")
    env.update(v.split("=", 1) for v in args.env)
    server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}"], cwd=site, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    script = os.path.join(site, "probe.lua")
    with open(script, "w") as f:
        f.write(PROBE_LUA)
    try:
        deadline = time.time() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/feed.xml", headers={"Accept-Encoding": "br, gzip"})
                assert conn.getresponse().status == 200
                conn.close()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("herald serve did not start")
                time.sleep(0.1)
        rss_start = proc_rss_mib(server.pid)

        probe = start_probe(port, script)
        time.sleep(args.seconds)
        idle, idle_count, _ = stop_probe(probe)

        probe = start_probe(port, script)
        seconds, received, statuses = crawl(port, paths, args.clients)
        busy, busy_count, busy_out = stop_probe(probe)
        rss_after = proc_rss_mib(server.pid)
        rss_peak = proc_rss_mib(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(site)
    if set(statuses) != {200}:
        print(f"warning: statuses other than 200 in the crawl: {statuses}")
    print(f"\ncrawled {len(paths):,} files ({pages:,} pages) in {seconds:.1f} s "
          f"({len(paths) / seconds:,.0f} files/s, {received / 1e6:.0f} MB received) with {args.clients} clients")
    print(f"/feed.xml idle: p50 {idle.get('50')}, p90 {idle.get('90')}, p99 {idle.get('99')} ({idle_count} requests)")
    print(f"/feed.xml during the crawl: p50 {busy.get('50')}, p90 {busy.get('90')}, p99 {busy.get('99')} ({busy_count} requests)")
    print(f"server resident memory: {rss_start:.0f} MiB before, {rss_after:.0f} MiB after, peak {rss_peak:.0f} MiB")
    if "99" not in busy:
        print(busy_out)
    print("\n| binary | crawl | files/s | /feed.xml p99 idle | /feed.xml p99 during crawl | RSS before | RSS after | peak |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.label or binary} | {seconds:.1f} s | {len(paths) / seconds:,.0f} | {idle.get('99')} | {busy.get('99')} "
          f"| {rss_start:.0f} MiB | {rss_after:.0f} MiB | {rss_peak:.0f} MiB |")


if __name__ == "__main__":
    main()
