#!/usr/bin/env python3
"""herald on PostgreSQL beside SQLite: delivery rate, the store's claim path, memory.

    python3 bench/cluster.py                        # builds, then every scenario
    python3 bench/cluster.py --only deliver --subscribers 100000
    python3 bench/cluster.py --only claims --rows 200000 --claimers 1,2,4,8
    python3 bench/cluster.py --only deliver --subscribers 1000000 --repeat 1   # memory
    python3 bench/cluster.py --herald OLD/herald --claims OLD/claims           # other builds

Scenarios (figures go to BENCHMARKS.md):
  deliver   One node on PostgreSQL and one on SQLite in the same run: a site
            of 20 articles (messages of about 31 KB) and N subscribers,
            `herald collect` and `herald compose` (not timed), then
            `herald deliver` (release build) over SMTP to Postfix's smtp-sink
            on loopback (it only counts), 8 connections. msgs/s, CPU time
            and peak resident memory (ru_maxrss) of herald, and the CPU time
            the PostgreSQL server spent during the send. The backends take
            turns, --repeat times.
  claims    The store alone (benches/claims.rs, no SMTP): an edition of
            --rows readers, then K claimers, each a node with its own pool,
            loop "claim 128 due rows, record the 128 as sent" until every row
            is recorded: rows/s for each K of --claimers on PostgreSQL, and
            for one claimer on SQLite, with the CPU time of the claimers'
            process and of the PostgreSQL server per 1,000 rows. Each
            measurement runs on a fresh copy of a seeded store (PostgreSQL:
            CREATE DATABASE ... TEMPLATE) with a new edition composed before
            the clock starts (then a CHECKPOINT).

PostgreSQL is a server of the script's own: Debian's postgresql package
(`initdb` and `postgres` from /usr/lib/postgresql/VERSION/bin or the PATH),
initdb into a temporary folder, `postgres` on a free port of 127.0.0.1 (run
as the `postgres` user when the script runs as root), with initdb's default
settings, durability included: fsync = on, synchronous_commit = on,
full_page_writes = on, wal_level = replica, shared_buffers = 128MB. The
server is stopped and its folder removed at the end. SQLite is herald's own
setting: WAL, synchronous = NORMAL. Nothing talks to any address but loopback.
"""

import argparse
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the shared helpers of bench/run.py)

NOW = bench.NOW


class Postgres:
    """A PostgreSQL server of this script's own, on a free loopback port."""

    def __init__(self):
        self.bin = pg_bin()
        self.dir = tempfile.mkdtemp(prefix="herald-bench-pg-")
        self.data = os.path.join(self.dir, "data")
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self.run_as(["initdb", "-D", self.data, "-U", "herald", "--auth=trust", "--no-locale", "-E", "UTF8"])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.server = subprocess.Popen(
            self.command(["postgres", "-D", self.data, "-p", str(self.port), "-k", self.dir,
                          "-c", "listen_addresses=127.0.0.1"]),
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while subprocess.run([os.path.join(self.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                              "-U", "herald", "-d", "postgres"]).returncode:
            if time.time() > deadline or self.server.poll() is not None:
                self.stop()
                sys.exit("PostgreSQL did not start")
            time.sleep(0.1)
        self.psql("SELECT 1")

    def command(self, args):
        program = [os.path.join(self.bin, args[0])] + args[1:]
        if self.as_postgres:
            return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"] + program
        return program

    def run_as(self, args):
        subprocess.run(self.command(args), check=True, stdout=subprocess.DEVNULL)

    def url(self, database):
        return f"postgres://herald@127.0.0.1:{self.port}/{database}"

    def psql(self, sql, database="postgres"):
        args = [os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", "127.0.0.1", "-p", str(self.port), "-U", "herald", "-d", database, "-c", sql]
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()

    def settings(self):
        names = ["server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level",
                 "shared_buffers", "max_wal_size", "checkpoint_timeout"]
        values = self.psql("SELECT string_agg(name || ' = ' || setting || COALESCE(unit, ''), ', ' ORDER BY name) "
                           f"FROM pg_settings WHERE name IN ({', '.join(repr(n) for n in names)})")
        return values.replace("8kB", " × 8 kB")

    def cpu_seconds(self):
        """CPU time of the server and its processes, living and ended (a
        second after the last client left, so that the server has reaped
        the processes that served it)."""
        time.sleep(1)
        total = proc_cpu(self.server.pid, children=True)
        for path in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(path) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.server.pid:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self):
        if self.server.poll() is None:
            self.server.send_signal(2)  # SIGINT: fast shutdown
            self.server.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def pg_bin():
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    if not found:
        sys.exit("PostgreSQL's initdb and postgres not found (apt-get install postgresql)")
    return os.path.dirname(found[-1])


def proc_cpu(pid, children=False):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def build():
    subprocess.run(["cargo", "build", "--release", "--locked"], cwd=bench.ROOT, check=True)


def claims_binary():
    """Builds benches/claims.rs (release settings) and returns its path."""
    out = subprocess.run(
        ["cargo", "bench", "--locked", "--bench", "claims", "--no-run", "--message-format=json-render-diagnostics"],
        cwd=bench.ROOT, check=True, stdout=subprocess.PIPE, text=True,
    ).stdout
    for line in out.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "claims" and message.get("executable"):
            return message["executable"]
    sys.exit("cargo did not name the claims benchmark's executable")


def scenario_deliver(pg, binary, subscribers, repeat):
    """One node on each backend, the same site, herald deliver to smtp-sink."""
    results = {"SQLite": [], "PostgreSQL": []}
    sink, port = bench.smtp_sink()
    try:
        for i in range(repeat):
            for backend in ("SQLite", "PostgreSQL"):
                env = {"HERALD_MAIL_TRANSPORT": "smtp", "HERALD_MAIL_SMTP_URL": f"smtp://127.0.0.1:{port}"}
                if backend == "PostgreSQL":
                    database = f"deliver_{i}"
                    pg.psql(f"CREATE DATABASE {database}")
                    env["HERALD_STORE_URL"] = pg.url(database)
                site = bench.make_site(20, subscribers, binary)
                started = time.perf_counter()
                bench.sh([binary, "collect", "--now", NOW], site, env)
                bench.sh([binary, "compose", "--now", NOW], site, env)
                prepared = time.perf_counter() - started
                if backend == "PostgreSQL":
                    pg.psql("CHECKPOINT")
                pg_before = pg.cpu_seconds()
                # A send that stalls (a relay set aside, a store error) is not
                # waited for forever: at most what 100 msgs/s would take, or 10 min.
                wall, peak, out = bench.sh([binary, "deliver", "--now", NOW], site, env,
                                           timeout=max(600, subscribers // 100))
                pg_cpu = pg.cpu_seconds() - pg_before if backend == "PostgreSQL" else None
                assert f"{subscribers} sent" in out, out
                results[backend].append((wall, bench.CPU[-1], peak, pg_cpu))
                extra = f"; PostgreSQL server {pg_cpu:.1f} s CPU" if pg_cpu is not None else ""
                print(f"{backend}, run {i + 1}: {subscribers / wall:,.0f} msgs/s ({wall:.2f} s, herald {bench.CPU[-1]:.1f} s CPU"
                      f"{extra}, peak {peak:.0f} MiB; collect + compose {prepared:.0f} s)", flush=True)
                shutil.rmtree(site)
                if backend == "PostgreSQL":
                    pg.psql(f"DROP DATABASE {database}")
    finally:
        sink.kill()
        sink.wait()
    print(f"\n`herald deliver`, {subscribers:,} subscribers × ~31 KB, 8 connections to smtp-sink; median of {repeat}\n")
    print("| store | msgs/s (median) | each run | herald CPU | PostgreSQL CPU | peak memory (max) |")
    print("|---|---|---|---|---|---|")
    rates = {}
    for backend, runs in results.items():
        walls = [r[0] for r in runs]
        rates[backend] = subscribers / statistics.median(walls)
        each = ", ".join(f"{subscribers / w:,.0f}" for w in walls)
        pg_cpu = f"{statistics.median([r[3] for r in runs]):.1f} s" if backend == "PostgreSQL" else "–"
        print(f"| {backend} | {rates[backend]:,.0f} | {each} | {statistics.median([r[1] for r in runs]):.1f} s"
              f" | {pg_cpu} | {max(r[2] for r in runs):.0f} MiB |")
    print(f"\nPostgreSQL / SQLite: {rates['PostgreSQL'] / rates['SQLite']:.0%}")


def scenario_claims(pg, binary, rows, claimers, repeat, batch):
    """benches/claims.rs on fresh copies of a seeded store."""
    env = dict(os.environ, RUST_LOG="warn")

    def measure(url, k):
        """rows/s, and the CPU seconds per 1,000 rows of the claimers' process and of PostgreSQL."""
        subprocess.run([binary, "--url", url, "--compose"], env=env, check=True, stdout=subprocess.DEVNULL)
        if url.startswith("postgres"):
            pg.psql("CHECKPOINT")
        pg_before = pg.cpu_seconds()
        with tempfile.TemporaryFile() as stdout:
            proc = subprocess.Popen([binary, "--url", url, "--rows", str(rows), "--claimers", str(k), "--batch", str(batch)],
                                    env=env, stdout=stdout)
            _, status, usage = os.wait4(proc.pid, 0)
            stdout.seek(0)
            out = stdout.read().decode()
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"the claims benchmark failed:\n{out}")
        line = next(l for l in out.splitlines() if l.startswith("claimers "))
        client = (usage.ru_utime + usage.ru_stime) * 1000 / rows
        server = (pg.cpu_seconds() - pg_before) * 1000 / rows if url.startswith("postgres") else 0.0
        print(f"{line} | CPU per 1,000 rows: {client * 1000:.0f} ms claimers, {server * 1000:.0f} ms PostgreSQL", flush=True)
        return float(line.split(" | ")[3].split()[0]), client, server

    results = []
    folder = tempfile.mkdtemp(prefix="herald-bench-claims-")
    try:
        seeded = os.path.join(folder, "seed.db")
        subprocess.run([binary, "--url", f"sqlite://{seeded}", "--seed", str(rows)], env=env, check=True)
        pg.psql("CREATE DATABASE seed")
        subprocess.run([binary, "--url", pg.url("seed"), "--seed", str(rows)], env=env, check=True)
        pg.psql("VACUUM ANALYZE", database="seed")
        for i in range(repeat):
            copy = os.path.join(folder, f"run{i}.db")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(seeded + suffix):
                    shutil.copy(seeded + suffix, copy + suffix)
            os.sync()
            results.append(("SQLite", 1, measure(f"sqlite://{copy}", 1)))
            for k in claimers:
                pg.psql("CREATE DATABASE run TEMPLATE seed")
                results.append(("PostgreSQL", k, measure(pg.url("run"), k)))
                pg.psql("DROP DATABASE run")
    finally:
        shutil.rmtree(folder)
    print(f"\nclaim {batch} rows → record them as sent, until {rows:,} rows are recorded; median of {repeat}\n")
    print("| store | claimers | rows/s (median) | each run | CPU per 1,000 rows: claimers | PostgreSQL |")
    print("|---|---|---|---|---|---|")
    for backend, k in [("SQLite", 1)] + [("PostgreSQL", k) for k in claimers]:
        runs = [r for b, kk, r in results if b == backend and kk == k]
        rates = [r[0] for r in runs]
        client = statistics.median(r[1] for r in runs) * 1000
        server = f"{statistics.median(r[2] for r in runs) * 1000:.0f} ms" if backend == "PostgreSQL" else "–"
        print(f"| {backend} | {k} | {statistics.median(rates):,.0f} | {', '.join(f'{r:,.0f}' for r in rates)}"
              f" | {client:.0f} ms | {server} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", help="use the release binary as it is")
    parser.add_argument("--only", choices=["deliver", "claims"], help="run one scenario")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument("--subscribers", type=int, default=100_000, help="readers for the deliver scenario")
    parser.add_argument("--rows", type=int, default=200_000, help="ledger rows for the claims scenario")
    parser.add_argument("--claimers", default="1,2,4,8", help="claimer counts for the claims scenario")
    parser.add_argument("--batch", type=int, default=128, help="rows per claim in the claims scenario")
    parser.add_argument("--herald", default=bench.BIN, help="the herald binary (default: the release build)")
    parser.add_argument("--claims", help="the claims benchmark's binary (default: build benches/claims.rs)")
    args = parser.parse_args()
    if not args.no_build:
        build()
    pg = Postgres()
    try:
        print(f"{os.cpu_count()} cores; PostgreSQL: {pg.settings()}\n", flush=True)
        if args.only in (None, "deliver"):
            scenario_deliver(pg, args.herald, args.subscribers, args.repeat)
        if args.only in (None, "claims"):
            claimers = [int(k) for k in args.claimers.split(",")]
            scenario_claims(pg, args.claims or claims_binary(), args.rows, claimers, args.repeat, args.batch)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
