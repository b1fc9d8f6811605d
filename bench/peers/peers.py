#!/usr/bin/env python3
"""autonomy beside the SQLite queues people use today, on the same work, in one run.

Each queue gets N tasks, each of which runs a child `true` (a real process per task, as autonomy's
exec handler does), then one worker drains them in one process, the way `work-once --drain`
does. Durability is each queue's own, as shipped (and autonomy at FULL and at NORMAL):

- huey 3.5.4, SqliteHuey(fsync=True): journal_mode WAL, synchronous FULL;
- persist-queue 1.1.0, SQLiteAckQueue: a rollback journal, synchronous FULL (its default);
- litequeue 0.9: WAL, synchronous NORMAL.

Beside them, the drain's floor: floor.c runs autonomy's own per-task statements straight against
SQLite's C API, on a database autonomy filled (cc, libsqlite3-dev and libssl-dev; skipped without).

Also, one process per enqueue, as a shell script does it: `autonomy enqueue`, a Python script
enqueueing one huey task, and the `sqlite3` CLI inserting one row into a similar WAL table.

Every drain runs --rounds times (3 unless told), the queues one after another in each round, and
each figure is the median of its rounds: a single drain moves by ±15% on a noisy machine, and a
slow minute of the machine then costs one round of a queue rather than its figure.

Usage: bench/peers/peers.py --binary PATH [--tasks 2000] [--rounds 3] [--python VENV_PYTHON]
(bench/peers/run.sh makes the venv with the peers from PyPI and calls this.)
Prints a table with ratios, and writes bench/results/peers.png (matplotlib) and peers.json.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "..", "results")

# Each peer: a script that enqueues N tasks, and one that drains them running `true` per task.
PEERS = {
    "huey 3.5.4 (fsync=True)": ("""
        from huey import SqliteHuey
        import subprocess, sys
        huey = SqliteHuey(filename=sys.argv[1], fsync=True)
        @huey.task()
        def run(n):
            subprocess.run(["true"], check=True)
        """, """
        for n in range(int(sys.argv[2])):
            run(n)
        """, """
        count = 0
        while True:
            task = huey.dequeue()
            if task is None:
                break
            huey.execute(task)
            count += 1
        assert count == int(sys.argv[2]), count
        """),
    "persist-queue 1.1.0 (SQLiteAckQueue)": ("""
        import persistqueue, subprocess, sys
        queue = persistqueue.SQLiteAckQueue(sys.argv[1], auto_commit=True, multithreading=False)
        """, """
        for n in range(int(sys.argv[2])):
            queue.put({"n": n})
        """, """
        count = 0
        while queue.size:
            item = queue.get(block=False)
            subprocess.run(["true"], check=True)
            queue.ack(item)
            count += 1
        assert count == int(sys.argv[2]), count
        """),
    "litequeue 0.9": ("""
        from litequeue import LiteQueue
        import subprocess, sys
        queue = LiteQueue(sys.argv[1] + "/queue.db")
        """, """
        for n in range(int(sys.argv[2])):
            queue.put(str(n))
        """, """
        count = 0
        while True:
            message = queue.pop()
            if message is None:
                break
            subprocess.run(["true"], check=True)
            queue.done(message.message_id)
            count += 1
        assert count == int(sys.argv[2]), count
        """),
}

HUEY_ONE = """
from huey import SqliteHuey
import sys
huey = SqliteHuey(filename=sys.argv[1], fsync=True)
@huey.task()
def run(n):
    pass
run(1)
"""


def timed(argv, env=None, stdin=None):
    start = time.perf_counter()
    subprocess.run(argv, env=env, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - start


def peer_drain(python, name, n, folder):
    setup, enqueue, drain = (textwrap.dedent(part) for part in PEERS[name])
    path = os.path.join(folder, name.split()[0])
    os.makedirs(path)
    target = path + "/huey.db" if name.startswith("huey") else path
    with open(f"{path}/enqueue.py", "w") as handle:
        handle.write(setup + enqueue)
    with open(f"{path}/drain.py", "w") as handle:
        handle.write(setup + drain)
    subprocess.run([python, f"{path}/enqueue.py", target, str(n)], check=True)
    return n / timed([python, f"{path}/drain.py", target, str(n)])


def autonomy_drain(binary, n, folder, synchronous):
    path = os.path.join(folder, f"autonomy-{synchronous}")
    os.makedirs(path)
    config = {"version": 1, "store": {"synchronous": synchronous},
              "worker": {"drain_max_seconds": 3600},
              "task_types": {"noop": {"safety": "safe", "handler": {"exec": {"argv": ["true"]}}}}}
    with open(f"{path}/autonomy.json", "w") as handle:
        json.dump(config, handle)
    env = dict(os.environ, AUTONOMY_CONFIG=f"{path}/autonomy.json", AUTONOMY_DATABASE=f"{path}/autonomy.db")
    lines = "\n".join('{"type":"noop","payload":{"n":%d}}' % i for i in range(n))
    subprocess.run([binary, "enqueue", "--batch", "-"], env=env, input=lines.encode(), check=True,
                   stdout=subprocess.DEVNULL)
    rate = n / timed([binary, "work-once", "--drain", "--max-tasks", str(n)], env=env)
    done = subprocess.run(["sqlite3", f"{path}/autonomy.db", "SELECT COUNT(*) FROM tasks WHERE state = 'done'"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert done == str(n), done
    return rate, env


def floor_drain(binary, n, folder, synchronous):
    """The drain's floor: autonomy's per-task statements in C (floor.c), on a database autonomy filled."""
    program = os.path.join(folder, "floor")
    if not os.path.exists(program):
        built = subprocess.run(["cc", "-O2", "-o", program, os.path.join(HERE, "floor.c"), "-lsqlite3", "-lcrypto"],
                               capture_output=True, text=True)
        if built.returncode != 0:
            print(f"(no floor: cc floor.c failed: {built.stderr.strip().splitlines()[-1:]})")
            return None
    path = os.path.join(folder, f"floor-{synchronous}")
    os.makedirs(path)
    env = dict(os.environ, AUTONOMY_CONFIG=os.path.join(folder, "autonomy-full", "autonomy.json"),
               AUTONOMY_DATABASE=f"{path}/autonomy.db")
    lines = "\n".join('{"type":"noop","payload":{"n":%d}}' % i for i in range(n))
    subprocess.run([binary, "enqueue", "--batch", "-"], env=env, input=lines.encode(), check=True,
                   stdout=subprocess.DEVNULL)
    return n / timed([program, f"{path}/autonomy.db", synchronous, str(n)])


def one_process_enqueues(binary, python, env, folder, runs=30):
    """Median wall time of one process that enqueues one task: autonomy, huey, sqlite3."""
    database = os.path.join(folder, "plain.db")
    subprocess.run(["sqlite3", database, "PRAGMA journal_mode=WAL; CREATE TABLE tasks (id INTEGER PRIMARY KEY, "
                    "type TEXT NOT NULL, state TEXT NOT NULL, payload TEXT NOT NULL, created_at INTEGER NOT NULL);"],
                   check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(folder, "huey_one.py"), "w") as handle:
        handle.write(HUEY_ONE)
    commands = {
        "autonomy enqueue": ([binary, "enqueue", "noop", "--payload", '{"n":1}'], env),
        "huey: a script enqueueing one task": (
            [python, os.path.join(folder, "huey_one.py"), os.path.join(folder, "one.db")], None),
        "sqlite3 CLI: one INSERT": (
            ["sqlite3", database, "PRAGMA synchronous=FULL; INSERT INTO tasks (type, state, payload, created_at) "
             "VALUES ('noop', 'queued', '{\"n\":1}', 0);"], None),
    }
    # In turns, one of each a round: a slow minute on this machine then weighs on all three alike,
    # not on whichever ran in it.
    samples = {name: [] for name in commands}
    for _ in range(runs):
        for name, (command, command_env) in commands.items():
            samples[name].append(timed(command, env=command_env))
    return {name: statistics.median(times) for name, times in samples.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not (os.path.isfile(args.binary) and os.access(args.binary, os.X_OK)):
        parser.error(f"{args.binary}: not an executable file (build it first: make)")
    folder = tempfile.mkdtemp(prefix="autonomy-peers-")
    try:
        n = args.tasks
        rounds = {}
        floor_rounds = {"full": [], "normal": []}
        env = None
        for index in range(max(1, args.rounds)):
            round_folder = os.path.join(folder, f"round-{index + 1}")
            os.makedirs(round_folder)
            for name in PEERS:
                rounds.setdefault(name, []).append(peer_drain(args.python, name, n, round_folder))
            rate, env = autonomy_drain(args.binary, n, round_folder, "full")
            rounds.setdefault("autonomy, FULL (default)", []).append(rate)
            rounds.setdefault("autonomy, NORMAL", []).append(autonomy_drain(args.binary, n, round_folder, "normal")[0])
            for synchronous in ("full", "normal"):
                floor_rounds[synchronous].append(floor_drain(args.binary, n, round_folder, synchronous))
        drains = {name: statistics.median(rates) for name, rates in rounds.items()}
        floors = {synchronous: statistics.median(rates) if all(rates) else None
                  for synchronous, rates in floor_rounds.items()}
        enqueues = one_process_enqueues(args.binary, args.python, env, folder)

        cores = os.cpu_count()
        print(f"{n:,} tasks, a child `true` each, one worker; {cores} cores, {time.strftime('%Y-%m-%d')}; "
              f"median of {len(rounds['autonomy, NORMAL'])} rounds")
        print(f"{'drain':<40} {'tasks/s':>9}   range")
        for name, rate in drains.items():
            print(f"{name:<40} {rate:>9,.0f}   {min(rounds[name]):,.0f}-{max(rounds[name]):,.0f}")
        full_peers = max(drains["huey 3.5.4 (fsync=True)"], drains["persist-queue 1.1.0 (SQLiteAckQueue)"])
        print(f"autonomy FULL / the better of huey and persist-queue: "
              f"{drains['autonomy, FULL (default)'] / full_peers:.2f}x (target >= 1.2x)")
        print(f"autonomy NORMAL / litequeue: {drains['autonomy, NORMAL'] / drains['litequeue 0.9']:.2f}x (target >= 1.2x)")
        if floors["full"] and floors["normal"]:
            # The same rows and commits in C, nothing else: what any implementation of them can reach.
            print(f"{'floor: the same statements in C, FULL':<40} {floors['full']:>9,.0f}"
                  f"   {floors['full'] / full_peers:.2f}x the better of huey and persist-queue")
            print(f"{'floor: the same statements in C, NORMAL':<40} {floors['normal']:>9,.0f}"
                  f"   {floors['normal'] / drains['litequeue 0.9']:.2f}x litequeue")
            print(f"autonomy / its floor: FULL {drains['autonomy, FULL (default)'] / floors['full']:.2f}x, "
                  f"NORMAL {drains['autonomy, NORMAL'] / floors['normal']:.2f}x")
        print(f"{'one process, one enqueue':<40} {'ms':>9}")
        for name, seconds in enqueues.items():
            print(f"{name:<40} {seconds * 1000:>9.2f}")
        print(f"autonomy enqueue / sqlite3 INSERT: "
              f"{enqueues['autonomy enqueue'] / enqueues['sqlite3 CLI: one INSERT']:.2f}x (target <= 2x)")

        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "peers.json"), "w") as handle:
            json.dump({"tasks": n, "cores": cores, "date": time.strftime("%Y-%m-%d"), "drain_tasks_per_s": drains,
                       "floor_tasks_per_s": floors, "rounds": {"drain_tasks_per_s": rounds,
                                                                "floor_tasks_per_s": floor_rounds},
                       "enqueue_seconds": enqueues}, handle, indent=2)
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plot
            figure, axis = plot.subplots(figsize=(8, 3.6))
            names = list(drains)
            axis.barh(names, [drains[k] for k in names],
                      color=["#1565c0" if k.startswith("autonomy") else "#9e9e9e" for k in names])
            axis.set_xlabel(f"tasks/s, draining {n:,} tasks that each run `true` (higher is better)")
            axis.invert_yaxis()
            figure.tight_layout()
            figure.savefig(os.path.join(RESULTS, "peers.png"), dpi=110)
            print(f"plot: {os.path.relpath(os.path.join(RESULTS, 'peers.png'))}")
        except ImportError:
            print("(no plot: pip install matplotlib)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
