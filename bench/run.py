#!/usr/bin/env python3
"""herald's benchmark: wall time and peak memory of whole commands.

    python3 bench/run.py            # builds the release binary first
    python3 bench/run.py --no-build # uses target/release/herald as it is

Scenarios (figures go to BENCHMARKS.md):
  run-1k-10k     `herald run` over 1,000 new articles and 10,000 subscribers,
                 delivering into the outbox (a fresh site, so every stage works)
  publish-10k    `herald publish` over 10,000 stored articles into an empty
                 public/ folder, then again with nothing changed
  smtp           `herald deliver` of a ~30 KB digest (20 articles) to N
                 subscribers (--subscribers, default 100,000) over SMTP to
                 Postfix's smtp-sink on loopback, side by side with Postfix's
                 smtp-source sending N messages of 30,000 bytes over
                 8 reused sessions to the same sink; --before BIN adds the same
                 run with another herald binary (on a site it initialises);
                 --dkim rsa|ed25519 signs every message
  collect        1,000 upstream feeds of 50 items served from loopback by nginx
                 (ETags, 304s): a first `herald collect`, then one
                 where every source answers 304; beside it the floor, feed-rs
                 parsing the same bytes from memory (examples/feed_floor.rs)
  signup         wrk (2 threads, 64 connections) against POST /subscribe with a
                 new address each request (rate limits raised; each writes its
                 confirmation mail to the outbox), then GET /unsubscribe?token=
  daemon         an idle `herald daemon` for a minute (CPU, memory); then wrk on
                 /feed.xml while the daemon is idle and while it sends
                 --subscribers mails to smtp-sink
  serve          `herald serve` and nginx serving the same feed.xml (50 items)
                 with the same headers: wrk, 2 threads, 64 connections, full
                 responses and 304s (If-None-Match); needs wrk and nginx

Each scenario runs --repeat times (default 3) on fresh copies; the table shows
the median wall time and the largest peak resident memory. Peak memory is the
child's ru_maxrss from wait4(2). Each command starts after a sync(2), so the
kernel's writeback of an earlier run does not slow a later one. Nothing here
talks to the network.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# cargo builds into $CARGO_TARGET_DIR when it is set.
TARGET = os.path.abspath(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release", "herald")
NOW = "2026-11-24T07:00:00Z"
CPU = []  # CPU seconds (user + system) of each measured command, in order
WORDS = (
    "harbour quay ferry market lighthouse storm council chestnut quince bakery tide "
    "fisher boat pier lamp winter timetable ticket letter school bus road bridge"
).split()


def sh(args, cwd, env=None, timeout=None):
    """Runs a command; returns (wall seconds, peak RSS in MiB, stdout).

    Dirty pages left by the previous run are flushed first (sync), so one
    run's writeback does not throttle the next one's writes. A command still
    running after `timeout` seconds is killed, and the benchmark stops."""
    os.sync()
    full_env = {"PATH": os.environ.get("PATH", ""), "HERALD_SECRET": "bench-secret-0123456789abcdef0123456789"}
    full_env.update(env or {})
    # Output goes to files, not pipes: a pipe that nobody reads until the
    # command ends would stop a command that writes more than 64 KiB.
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=cwd, env=full_env, stdout=stdout, stderr=stderr)
        watchdog = threading.Timer(timeout, proc.kill) if timeout else None
        if watchdog:
            watchdog.start()
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if watchdog:
            watchdog.cancel()
        stdout.seek(0), stderr.seek(0)
        out, err = stdout.read().decode(), stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        why = f"killed after {timeout} s" if timeout and wall >= timeout else proc.returncode
        sys.exit(f"{' '.join(args)} failed ({why}):\n{out}\n{err}")
    CPU.append(rusage.ru_utime + rusage.ru_stime)
    return wall, rusage.ru_maxrss / 1024.0, out


def article(i, rng):
    title = " ".join(rng.choice(WORDS) for _ in range(6)).capitalize()
    paras = "\n\n".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 90))) + "." for _ in range(rng.randint(3, 6))
    )
    day = 1 + i % 28
    return (
        f'+++\ntitle = "{title} {i}"\ndate = 2026-10-{day:02d}T{i % 24:02d}:{i % 60:02d}:00Z\n'
        f'author = "Writer {i % 17}"\ntags = ["{rng.choice(WORDS)}", "{rng.choice(WORDS)}"]\n+++\n\n'
        f"{paras}\n\n> A quote from reader {i}.\n\n[A link](https://example.org/{i}) and ![an image](images/{i}.png)\n"
    )


def make_site(articles, subscribers, binary=None):
    site = tempfile.mkdtemp(prefix="herald-bench-")
    sh([binary or BIN, "init", "."], site)
    content = os.path.join(site, "content")
    shutil.rmtree(content)
    os.makedirs(content)
    rng = random.Random(7)
    for i in range(articles):
        with open(os.path.join(content, f"post-{i:05d}.md"), "w") as f:
            f.write(article(i, rng))
    with open(os.path.join(site, "subscribers", "daily.csv"), "w") as f:
        f.write("email,name\n")
        for i in range(subscribers):
            f.write(f"reader{i}@example.com,Reader {i}\n")
    return site


def scenario_run(repeat):
    # Sites are removed only at the end: creating many files right after
    # deleting many makes ext4 search for free inodes, and that would be
    # measured instead of herald.
    walls, peaks, sites, cpus = [], [], [], []
    for _ in range(repeat):
        site = make_site(1000, 10000)
        sites.append(site)
        wall, peak, out = sh([BIN, "run", "--now", NOW], site)
        cpus.append(CPU[-1])
        sent = len(os.listdir(os.path.join(site, "outbox")))
        assert sent == 10000, f"expected 10000 messages in the outbox, found {sent}\n{out}"
        walls.append(wall)
        peaks.append(peak)
    for site in sites:
        shutil.rmtree(site)
    return [("herald run: 1,000 articles, 10,000 subscribers → outbox", walls, peaks, cpus)]


def scenario_publish(repeat):
    cold_w, cold_p, warm_w, warm_p, cold_c, warm_c = [], [], [], [], [], []
    base = make_site(10000, 0)
    sh([BIN, "collect", "--now", NOW], base)
    for i in range(repeat):
        # A fresh, empty output folder each time (see scenario_run).
        env = {"HERALD_FEEDS_OUTPUT_DIR": f"public-{i}"}
        wall, peak, _ = sh([BIN, "publish", "--now", NOW], base, env)
        cold_w.append(wall)
        cold_p.append(peak)
        cold_c.append(CPU[-1])
        wall, peak, out = sh([BIN, "publish", "--now", NOW], base, env)
        assert "feeds unchanged" in out, out
        warm_w.append(wall)
        warm_p.append(peak)
        warm_c.append(CPU[-1])
    # One new article: only what it changes is rewritten.
    new_w, new_p, new_c = [], [], []
    for i in range(repeat):
        with open(os.path.join(base, "content", f"zz-new-{i}.md"), "w") as f:
            f.write(f'+++\ntitle = "A new one {i}"\ndate = 2027-01-0{i + 1}T00:00:00Z\ntags = ["harbour"]\n+++\nNew.\n')
        sh([BIN, "collect", "--now", NOW], base)
        env = {"HERALD_FEEDS_OUTPUT_DIR": f"public-{repeat - 1}"}
        wall, peak, out = sh([BIN, "publish", "--now", NOW], base, env)
        new_w.append(wall)
        new_p.append(peak)
        new_c.append(CPU[-1])
        print("one new article:", out.strip().replace("published ", "", 1))
    shutil.rmtree(base)
    return [
        ("herald publish: 10,000 articles, empty public/", cold_w, cold_p, cold_c),
        ("herald publish: 10,000 articles, nothing changed", warm_w, warm_p, warm_c),
        ("herald publish: 10,000 articles + 1 new", new_w, new_p, new_c),
    ]


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smtp_sink():
    """Starts smtp-sink (no dump: it only counts) on a free loopback port."""
    port = free_port()
    sink = subprocess.Popen(
        ["/usr/sbin/smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return sink, port


def dkim_env(site, algorithm):
    """Writes a fresh DKIM key into the site; returns the variables that use it."""
    path = os.path.join(site, "dkim.key")
    if algorithm == "rsa":
        subprocess.run(["openssl", "genrsa", "-traditional", "-out", path, "2048"], check=True, capture_output=True)
    else:
        import base64

        with open(path, "w") as f:
            f.write(base64.b64encode(os.urandom(32)).decode())
    return {
        "HERALD_MAIL_DKIM_SELECTOR": "bench",
        "HERALD_MAIL_DKIM_KEY_FILE": "dkim.key",
        "HERALD_MAIL_DKIM_ALGORITHM": algorithm,
    }


def scenario_smtp(subscribers, before, dkim=None):
    rows = []
    sink, port = smtp_sink()
    try:
        base_env = {"HERALD_MAIL_TRANSPORT": "smtp", "HERALD_MAIL_SMTP_URL": f"smtp://127.0.0.1:{port}"}
        runs = [("herald", BIN)] + ([("herald (before)", before)] if before else [])
        for label, binary in runs:
            site = make_site(20, subscribers, binary)
            env = dict(base_env)
            if dkim:
                env.update(dkim_env(site, dkim))
                label = f"{label}, DKIM {dkim}"
            sh([binary, "collect", "--now", NOW], site)
            sh([binary, "compose", "--now", NOW], site)
            size = os.path.getsize(os.path.join(site, "herald.db"))
            wall, peak, out = sh([binary, "deliver", "--now", NOW], site, env)
            assert f"{subscribers} sent" in out, out
            rows.append((f"{label} deliver, {subscribers:,} × ~30 KB, 8 connections", [wall], [peak], [CPU[-1]]))
            print(f"{label}: {subscribers / wall:,.0f} msgs/s ({out.strip()}; store {size / 1e6:.0f} MB)")
            shutil.rmtree(site)
        wall, peak, _ = sh(
            ["/usr/sbin/smtp-source", "-d", "-s", "8", "-m", str(subscribers), "-l", "30000", f"127.0.0.1:{port}"],
            ROOT,
        )
        rows.append((f"smtp-source -d -s 8 -m {subscribers} -l 30000 (reference)", [wall], [peak], [CPU[-1]]))
        print(f"smtp-source: {subscribers / wall:,.0f} msgs/s")
    finally:
        sink.kill()
        sink.wait()
    return rows


NGINX_CONF = """
worker_processes 2;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    types {{ application/rss+xml xml; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        etag on;
        add_header Cache-Control "public, max-age=300";
        add_header Vary "Accept-Encoding";
    }}
}}
"""


def start_nginx(root, port):
    """Starts nginx serving `root` on loopback; returns (process, its config folder)."""
    conf_dir = tempfile.mkdtemp(prefix="herald-nginx-")
    with open(os.path.join(conf_dir, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(dir=conf_dir, port=port, root=root))
    nginx = subprocess.Popen(["nginx", "-c", os.path.join(conf_dir, "nginx.conf")], stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return nginx, conf_dir


def wrk(url, headers=(), seconds=10):
    args = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    rps = float(next(l for l in out.splitlines() if l.startswith("Requests/sec")).split()[1])
    p99 = next((l.split()[1] for l in out.splitlines() if l.strip().startswith("99%")), "?")
    return rps, p99


def head_of(url, extra=()):
    import urllib.request

    req = urllib.request.Request(url, method="HEAD", headers=dict(h.split(": ", 1) for h in extra))
    with urllib.request.urlopen(req) as r:
        return r.headers  # case-insensitive


def scenario_serve(seconds):
    """feed.xml of 50 items: herald serve and nginx, full responses and 304s."""
    site = make_site(50, 0)
    sh([BIN, "collect", "--now", NOW], site)
    sh([BIN, "publish", "--now", NOW], site)
    root = os.path.join(site, "public")
    os.chmod(site, 0o755)  # nginx's workers run as an unprivileged user
    hport, nport = free_port(), free_port()
    herald = subprocess.Popen(
        [BIN, "serve", "--listen", f"127.0.0.1:{hport}"], cwd=site, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    nginx, conf_dir = start_nginx(root, nport)
    rows = []
    try:
        size = os.path.getsize(os.path.join(root, "feed.xml"))
        for name, port in [("herald serve", hport), ("nginx 1.22", nport)]:
            url = f"http://127.0.0.1:{port}/feed.xml"
            etag = head_of(url)["ETag"]
            full, full_p99 = wrk(url, seconds=seconds)
            cond, cond_p99 = wrk(url, [f"If-None-Match: {etag}"], seconds=seconds)
            rows.append((name, full, full_p99, cond, cond_p99))
            print(f"{name}: {full:,.0f} req/s full ({size:,} bytes), {cond:,.0f} req/s 304")
    finally:
        herald.terminate()
        nginx.terminate()
        herald.wait()
        nginx.wait()
        shutil.rmtree(conf_dir)
        shutil.rmtree(site)
    print("\n| server | full responses (req/s) | p99 | 304 (req/s) | p99 |")
    print("|---|---|---|---|---|")
    for name, full, fp, cond, cp in rows:
        print(f"| {name} | {full:,.0f} | {fp} | {cond:,.0f} | {cp} |")
    h, n = rows[0], rows[1]
    print(f"\nherald / nginx: {h[1] / n[1]:.0%} full, {h[3] / n[3]:.0%} 304")
    return []


SIGNUP_LUA = r"""
-- POST /subscribe with a new address every request (thread id and counter).
local counter = 0
local thread_id = 0
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
function init(args)
  thread_id = id
end
function request()
  counter = counter + 1
  local body = "csrf=" .. os.getenv("CSRF") .. "&list=daily&name=&website=&email=r" .. thread_id .. "x" .. counter .. "%40example.org"
  return wrk.format("POST", "/subscribe", {["Content-Type"] = "application/x-www-form-urlencoded", ["Cookie"] = os.getenv("COOKIE")}, body)
end
"""


def scenario_signup(seconds):
    """wrk against POST /subscribe (a new address each request) and GET /unsubscribe."""
    import hashlib
    import hmac
    import urllib.request

    site = make_site(1, 0)
    secret = "bench-secret-0123456789abcdef0123456789"
    sh([BIN, "subscribers", "add", "first@example.org", "--list", "daily"], site)
    port = free_port()
    env = dict(os.environ, HERALD_SECRET=secret, HERALD_WEB_SUBSCRIBE_PER_IP_PER_MINUTE="100000000",
               HERALD_SITE_BASE_URL=f"http://127.0.0.1:{port}/")
    herald = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}"], cwd=site, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    script = os.path.join(site, "signup.lua")
    with open(script, "w") as f:
        f.write(SIGNUP_LUA)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/subscribe") as r:
            cookie = r.headers["Set-Cookie"].split(";")[0]
            page = r.read().decode()
        csrf = page.split('name="csrf" value="')[1][:32]
        args = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", "-s", script, f"http://127.0.0.1:{port}/subscribe"]
        out = subprocess.run(args, capture_output=True, text=True, check=True, env=dict(os.environ, CSRF=csrf, COOKIE=cookie)).stdout
        post_rps = float(next(l for l in out.splitlines() if l.startswith("Requests/sec")).split()[1])
        post_p99 = next((l.split()[1] for l in out.splitlines() if l.strip().startswith("99%")), "?")
        errors = [l.strip() for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l]
        mac = hmac.new(secret.encode(), b"unsubscribe\0daily\0" + b"1", hashlib.sha256).hexdigest()[:32]
        unsubscribe = f"http://127.0.0.1:{port}/unsubscribe?token=daily.1.{mac}"
        with urllib.request.urlopen(unsubscribe) as r:
            assert r.status == 200 and b"Unsubscribe" in r.read()
        get_rps, get_p99 = wrk(unsubscribe, seconds=seconds)
        stored = sh([BIN, "subscribers", "export", "--list", "daily", "--all"], site)[2].count("\n") - 1
        mails = len(os.listdir(os.path.join(site, "outbox")))
    finally:
        herald.terminate()
        herald.wait()
        shutil.rmtree(site)
    print(f"POST /subscribe: {post_rps:,.0f} req/s, p99 {post_p99} {errors}; {stored:,} members stored, {mails:,} confirmation mails in the outbox")
    print(f"GET /unsubscribe page: {get_rps:,.0f} req/s, p99 {get_p99}")
    print("\n| route | requests/s | p99 |")
    print("|---|---|---|")
    print(f"| POST /subscribe (new address each) | {post_rps:,.0f} | {post_p99} |")
    print(f"| GET /unsubscribe?token=... | {get_rps:,.0f} | {get_p99} |")
    return []



def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"


def metric(port, name):
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request) as r:
        text = r.read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name))


def start_daemon(site, env):
    port = free_port()
    full_env = dict(os.environ, HERALD_SECRET="bench-secret-0123456789abcdef0123456789", HERALD_ADMIN_TOKEN=ADMIN_TOKEN, **env)
    daemon = subprocess.Popen([BIN, "daemon", "--listen", f"127.0.0.1:{port}"], cwd=site, env=full_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            metric(port, "herald_job_running")
            return daemon, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("herald daemon did not start")


def scenario_daemon(seconds, subscribers):
    """An idle daemon for a minute; then wrk on /feed.xml while the daemon sends `subscribers` mails."""
    import datetime

    # Idle: the example's schedules (collect every 15 minutes, the list at 07:00).
    site = make_site(50, 0)
    sh([BIN, "collect", "--now", NOW], site)
    sh([BIN, "publish", "--now", NOW], site)
    daemon, port = start_daemon(site, {})
    try:
        time.sleep(2)
        cpu0 = proc_cpu_seconds(daemon.pid)
        time.sleep(60)
        idle_cpu = proc_cpu_seconds(daemon.pid) - cpu0
        idle_rss = proc_rss_mib(daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(site)
    print(f"idle daemon: {idle_cpu:.2f} s CPU in 60 s ({idle_cpu / 60:.2%} of a core), {idle_rss:.0f} MiB resident")

    # Busy: the list fires a little after the idle wrk run.
    site = make_site(50, subscribers)
    sh([BIN, "collect", "--now", NOW], site)
    sh([BIN, "publish", "--now", NOW], site)
    fire = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds + 8)
    with open(os.path.join(site, "herald.toml")) as f:
        config = f.read()
    config = config.replace('schedule = "0 0 7 * * *"', f'schedule = "{fire.second} {fire.minute} {fire.hour} * * *"')
    config = config.replace('timezone = "Europe/Lisbon"', 'timezone = "UTC"')
    with open(os.path.join(site, "herald.toml"), "w") as f:
        f.write(config)
    sink, sink_port = smtp_sink()
    env = {"HERALD_MAIL_TRANSPORT": "smtp", "HERALD_MAIL_SMTP_URL": f"smtp://127.0.0.1:{sink_port}"}
    daemon, port = start_daemon(site, env)
    url = f"http://127.0.0.1:{port}/feed.xml"
    try:
        idle = wrk(url, seconds=seconds)
        while datetime.datetime.now(datetime.timezone.utc) < fire:
            time.sleep(0.1)
        # Wait for the edition to be composed and the first mails to go.
        while metric(port, 'herald_mails{list="daily",state="sent"}') < 1000:
            time.sleep(0.1)
        before = metric(port, 'herald_mails{list="daily",state="sent"}')
        busy = wrk(url, seconds=seconds)
        after = metric(port, 'herald_mails{list="daily",state="sent"}')
        while metric(port, 'herald_mails{list="daily",state="sent"}') < subscribers:
            time.sleep(0.5)
        peak = proc_rss_mib(daemon.pid, "VmHWM")
    finally:
        daemon.terminate()
        daemon.wait()
        sink.kill()
        sink.wait()
        shutil.rmtree(site)
    assert after < subscribers, "the send ended before wrk did; raise --subscribers"
    print(f"\nmails sent during the busy wrk run: {after - before:,.0f} ({(after - before) / seconds:,.0f} msgs/s); daemon peak {peak:.0f} MiB")
    print("\n| /feed.xml under wrk | requests/s | p99 |")
    print("|---|---|---|")
    print(f"| daemon idle | {idle[0]:,.0f} | {idle[1]} |")
    print(f"| daemon sending {subscribers:,} mails | {busy[0]:,.0f} | {busy[1]} |")
    return []



def make_feeds(folder, feeds, items):
    """Writes `feeds` RSS files of `items` items each into `folder` (f0.xml, f1.xml, ...)."""
    rng = random.Random(11)
    for f in range(feeds):
        parts = [f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Feed {f}</title>'
                 f"<link>https://feed{f}.example.org/</link><description>Feed {f}</description>"]
        for i in range(items):
            text = " ".join(rng.choice(WORDS) for _ in range(60))
            parts.append(
                f"<item><title>Item {i} of feed {f}</title><link>https://feed{f}.example.org/{i}</link>"
                f"<guid>https://feed{f}.example.org/{i}</guid><pubDate>Mon, 23 Nov 2026 0{i % 10}:00:00 +0000</pubDate>"
                f"<description>&lt;p&gt;{text}&lt;/p&gt;</description></item>"
            )
        parts.append("</channel></rss>")
        with open(os.path.join(folder, f"f{f}.xml"), "w") as out:
            out.write("".join(parts))


def scenario_collect(repeat, feeds=1000, items=50):
    """1,000 upstream feeds of 50 items on loopback: a first collect, then one where every source answers 304."""
    folder = tempfile.mkdtemp(prefix="herald-feeds-")
    make_feeds(folder, feeds, items)
    floor = subprocess.run(
        ["cargo", "run", "--release", "--quiet", "--example", "feed_floor", "--", folder],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()
    # nginx serves the feeds, with ETags and 304s, so the server is not what is measured.
    os.chmod(folder, 0o755)
    port = free_port()
    server, conf_dir = start_nginx(folder, port)
    firsts, seconds, peaks1, peaks2, cpu1, cpu2, stores = [], [], [], [], [], [], []
    try:
        for _ in range(repeat):
            site = make_site(1, 0)
            with open(os.path.join(site, "herald.toml"), "a") as conf:
                for f in range(feeds):
                    conf.write(f'\n[[sources]]\nname = "f{f}"\nkind = "feed"\nurl = "http://127.0.0.1:{port}/f{f}.xml"\nallow_private = true\n')
            first, first_peak, out1 = sh([BIN, "collect", "--now", NOW], site)
            cpu1.append(CPU[-1])
            second, second_peak, out2 = sh([BIN, "collect", "--now", NOW], site)
            cpu2.append(CPU[-1])
            assert f"{feeds * items + 1} new" in out1, out1
            assert "0 new" in out2, out2
            firsts.append(first), seconds.append(second), peaks1.append(first_peak), peaks2.append(second_peak)
            stores.append(sqlite_floor(os.path.join(site, "herald.db")))
            shutil.rmtree(site)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(conf_dir)
        shutil.rmtree(folder)
    print(f"floor (parsing the same bytes from memory): {floor}")
    print(f"SQLite alone inserting the same {feeds * items:,} rows: {statistics.median(stores):.2f} s")
    print(f"first collect: {statistics.median(firsts):.2f} s ({out1.strip()})")
    print(f"second collect, every source 304: {statistics.median(seconds):.2f} s ({out2.strip()})")
    return [
        (f"herald collect: {feeds} feeds x {items} items, first", firsts, peaks1, cpu1),
        (f"herald collect: {feeds} feeds, all 304", seconds, peaks2, cpu2),
    ]


def sqlite_floor(db):
    """Seconds SQLite alone takes to store a collect's articles: the rows read back from
    `db`, inserted into an empty copy of its articles table (same indexes, WAL, synchronous
    NORMAL) with one prepared statement, 3,200 rows a transaction."""
    import sqlite3

    src = sqlite3.connect(db)
    columns = "source, guid, url, title, author, published, updated, summary, content_html, tags, content_hash, first_seen, in_digest"
    rows = src.execute(f"SELECT {columns} FROM articles").fetchall()
    schema = [r[0] for r in src.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'articles' AND sql IS NOT NULL")]
    src.close()
    folder = tempfile.mkdtemp(prefix="herald-sqlite-")
    try:
        dst = sqlite3.connect(os.path.join(folder, "floor.db"), isolation_level=None)
        dst.execute("PRAGMA journal_mode = WAL")
        dst.execute("PRAGMA synchronous = NORMAL")
        for sql in schema:
            dst.execute(sql)
        marks = ", ".join("?" * len(columns.split(", ")))
        start = time.perf_counter()
        for i in range(0, len(rows), 3200):
            dst.execute("BEGIN IMMEDIATE")
            dst.executemany(f"INSERT INTO articles ({columns}) VALUES ({marks})", rows[i:i + 3200])
            dst.execute("COMMIT")
        dst.close()
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", help="use target/release/herald as it is")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (default 3)")
    parser.add_argument("--only", choices=["run", "publish", "smtp", "serve", "collect", "signup", "daemon"], help="run one scenario")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per measurement (serve, signup)")
    parser.add_argument("--subscribers", type=int, default=100_000, help="readers for the smtp and daemon scenarios")
    parser.add_argument("--before", help="another herald binary to compare in the smtp scenario")
    parser.add_argument("--dkim", choices=["rsa", "ed25519"], help="sign with DKIM in the smtp scenario")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    rows = []
    if args.only in (None, "run"):
        rows += scenario_run(args.repeat)
    if args.only in (None, "publish"):
        rows += scenario_publish(args.repeat)
    if args.only in (None, "collect"):
        rows += scenario_collect(args.repeat)
    if args.only in (None, "serve"):
        rows += scenario_serve(args.seconds)
    if args.only in (None, "signup"):
        rows += scenario_signup(args.seconds)
    if args.only in (None, "daemon"):
        rows += scenario_daemon(args.seconds, args.subscribers)
    if args.only in (None, "smtp"):
        rows += scenario_smtp(args.subscribers, args.before, args.dkim)
    print(f"\n{os.cpu_count()} cores; median of {args.repeat} runs\n")
    print("| scenario | wall time (median) | each run | CPU time (median) | peak memory (max) |")
    print("|---|---|---|---|---|")
    for name, walls, peaks, cpus in rows:
        runs = ", ".join(f"{w:.2f}" for w in walls)
        print(
            f"| {name} | {statistics.median(walls):.2f} s | {runs} | {statistics.median(cpus):.2f} s"
            f" | {max(peaks):.0f} MiB |"
        )


if __name__ == "__main__":
    main()
