#!/usr/bin/env python3
"""The PostgreSQL store beside SQLite, in one run, on this machine.

1. Drain throughput: N tasks that each run a child `true`, drained by 1, 2 and 4 `work-once --drain`
   processes at once (hosts, each with its own `worker.host`), on PostgreSQL and on SQLite.
2. Claim cost at depth: the cost per task of draining 200 tasks from the front of a queue of
   1,000,000 queued tasks, beside the same drain from a queue of 1,000, on both engines.

PostgreSQL is a scratch cluster that syncs to disk as a real server does (synchronous_commit on,
fsync on), started by scripts/postgres-test-cluster in its own folder and port; SQLite is at its
default durability (WAL, synchronous FULL).

Usage: bench/postgres_bench.py [--binary .build-static/release/autonomy] [--tasks 2000] [--deep 1000000]
Prints a table; writes bench/results/postgres.json.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
CLUSTER = "/tmp/autonomy-postgres-bench"
PORT = "54330"


def start_cluster():
    out = subprocess.run([os.path.join(ROOT, "scripts/postgres-test-cluster"), "start", CLUSTER, PORT],
                         env=dict(os.environ, AUTONOMY_PG_FSYNC="on"), capture_output=True, text=True, check=True)
    values = dict(line.replace("export ", "", 1).split("=", 1) for line in out.stdout.splitlines())
    return values["AUTONOMY_TEST_POSTGRES"], values["AUTONOMY_TEST_POSTGRES_PASSWORD"]


def psql(admin, password, sql):
    subprocess.run(["psql", "-q", admin, "-c", sql], env=dict(os.environ, PGPASSWORD=password), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fresh_postgres(admin, password, name):
    psql(admin, password, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(admin, password, f"CREATE DATABASE {name}")
    return admin.rsplit("/", 1)[0] + f"/{name}?sslmode=disable"


def write_config(folder, host):
    path = os.path.join(folder, f"{host}.json")
    with open(path, "w") as handle:
        json.dump({"version": 1, "worker": {"host": host, "drain_max_seconds": 3600},
                   "task_types": {"noop": {"safety": "safe", "handler": {"exec": {"argv": ["true"]}}}}}, handle)
    return path


def env_for(folder, database, password, host="producer"):
    return dict(os.environ, AUTONOMY_CONFIG=write_config(folder, host), AUTONOMY_DATABASE=database,
                PGPASSWORD=password, PGPASSFILE="/nonexistent")


def enqueue(binary, env, n, chunk=100_000):
    done = 0
    while done < n:
        size = min(chunk, n - done)
        lines = "\n".join('{"type":"noop","payload":{"n":%d}}' % (done + i) for i in range(size))
        subprocess.run([binary, "enqueue", "--batch", "-"], env=env, input=lines.encode(), check=True,
                       stdout=subprocess.DEVNULL)
        done += size


def drain(binary, folder, database, password, workers, max_tasks=None):
    """Runs `workers` drains at once; returns the wall time until the last one ends."""
    arguments = [binary, "work-once", "--drain", "--max-seconds", "3600"]
    if max_tasks:
        arguments += ["--max-tasks", str(max_tasks)]
    start = time.perf_counter()
    processes = [subprocess.Popen(arguments, env=env_for(folder, database, password, f"host{i}"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(workers)]
    for process in processes:
        _, error = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"work-once failed: {error.decode()[-400:]}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build-static/release/autonomy"))
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--deep", type=int, default=1_000_000)
    parser.add_argument("--depth-only", action="store_true", help="skip the drain figures")
    args = parser.parse_args()
    if shutil.which("psql") is None:
        raise SystemExit("error: needs PostgreSQL (apt-get install postgresql)")
    admin, password = start_cluster()
    folder = tempfile.mkdtemp(prefix="autonomy-pg-bench-")
    results = {"tasks": args.tasks, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "drain": {},
               "depth": {}, "fill": {}}
    try:
        n = args.tasks
        for workers in () if args.depth_only else (1, 2, 4):
            url = fresh_postgres(admin, password, f"bench_drain_{workers}")
            enqueue(args.binary, env_for(folder, url, password), n)
            results["drain"][f"postgres, {workers} worker(s)"] = n / drain(args.binary, folder, url, password, workers)
            sqlite = os.path.join(folder, f"drain-{workers}.db")
            enqueue(args.binary, env_for(folder, sqlite, password), n)
            results["drain"][f"sqlite, {workers} worker(s)"] = n / drain(args.binary, folder, sqlite, password, workers)

        for depth in (1_000, args.deep):
            url = fresh_postgres(admin, password, f"bench_depth_{depth}")
            sqlite = os.path.join(folder, f"depth-{depth}.db")
            for name, database in (("postgres", url), ("sqlite", sqlite)):
                started = time.perf_counter()
                enqueue(args.binary, env_for(folder, database, password), depth)
                results["fill"][f"{name}, {depth:,} tasks"] = depth / (time.perf_counter() - started)
                # One task first, untimed: what the fill left behind (SQLite's WAL to checkpoint,
                # PostgreSQL's fresh table statistics) is not the claim's cost.
                drain(args.binary, folder, database, password, 1, max_tasks=1)
                seconds = drain(args.binary, folder, database, password, 1, max_tasks=200)
                results["depth"][f"{name}, {depth:,} queued"] = seconds / 200 * 1000
            psql(admin, password, f"DROP DATABASE IF EXISTS bench_depth_{depth} WITH (FORCE)")

        print(f"{n:,} tasks, a child `true` each; {results['cores']} cores, {results['date']}; "
              f"PostgreSQL with fsync on, SQLite at FULL")
        if results["drain"]:
            print(f"{'drain':<32} {'tasks/s':>9}")
        for name, rate in results["drain"].items():
            print(f"{name:<32} {rate:>9,.0f}")
        print(f"{'drain 200 tasks from the front of':<32} {'ms/task':>9}")
        for name, ms in results["depth"].items():
            print(f"{name:<32} {ms:>9.2f}")
        print(f"{'enqueue --batch (100,000 per call)':<32} {'tasks/s':>9}")
        for name, rate in results["fill"].items():
            print(f"{name:<32} {rate:>9,.0f}")
        for engine in ("postgres", "sqlite"):
            shallow = results["depth"][f"{engine}, 1,000 queued"]
            deep = results["depth"][f"{engine}, {args.deep:,} queued"]
            print(f"{engine}: a task at {args.deep:,} queued costs {deep / shallow:.2f}x one at 1,000")
        os.makedirs(RESULTS, exist_ok=True)
        saved = os.path.join(RESULTS, "postgres.json")
        if args.depth_only and os.path.exists(saved):  # keep the drain figures of the last full run
            with open(saved) as handle:
                results["drain"] = json.load(handle).get("drain", {})
        with open(saved, "w") as handle:
            json.dump(results, handle, indent=2)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for workers in (1, 2, 4):
            psql(admin, password, f"DROP DATABASE IF EXISTS bench_drain_{workers} WITH (FORCE)")


if __name__ == "__main__":
    main()
