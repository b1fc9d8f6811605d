#!/usr/bin/env python3
"""kill -9 soak: drains a queue while killing `work-once` with SIGKILL at random moments, most of
them while a handler runs, then checks that nothing was lost or done twice.

The handler's side effect is visible (a line in effects.txt) and the type's verifier checks for it,
so a task whose worker died after the effect is verified, not run again. Each kill takes the whole
session (the worker and the handlers it started), as systemd does once the worker is gone
(KillMode=mixed: SIGKILL to what is left in the unit).

Needs a debug build (it moves the worker's clock with AUTONOMY_TEST_CLOCK_OFFSET so that a dead
worker's lease expires without waiting):

    swift build && python3 bench/chaos.py --kills 1000

Prints the figures and exits 1 when a check fails: tasks lost, side effects repeated,
PRAGMA integrity_check, ledger verify, payload files the killed workers left behind (the runs that
recover their tasks remove them).
"""
import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time


def session_members(session):
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        # state ppid pgrp session: a zombie is already dead, it only waits to be reaped
        if len(fields) > 3 and int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry))
    return members


def kill_session(session):
    """SIGKILL every process of the session, and wait until none is left."""
    for _ in range(200):
        members = session_members(session)
        if not members:
            return
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=".build/debug/autonomy")
    parser.add_argument("--kills", type=int, default=1000, help="kills that land mid-work before stopping")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    binary = os.path.abspath(args.binary)
    folder = tempfile.mkdtemp(prefix="autonomy-chaos-")
    config = {
        "version": 1,
        "worker": {"lease": "2s", "kill_grace": "500ms", "drain_max_seconds": 30},
        "task_types": {
            "effect": {
                "safety": "safe",
                "handler": {"exec": {"argv": ["/bin/sh", "-c",
                                              'echo "$AUTONOMY_TASK_ID" >> effects.txt; sleep 0.02'],
                                     "cwd": folder}},
                "verify": [{"command": {"argv": ["/bin/sh", "-c",
                                                 f'grep -qx "$AUTONOMY_TASK_ID" {folder}/effects.txt']}}],
                "retry": {"max_attempts": 50, "backoff": "0s", "jitter": 0},
            }
        },
    }
    with open(os.path.join(folder, "autonomy.json"), "w") as handle:
        json.dump(config, handle)
    # The workers' temporary folder, where each attempt's payload file is.
    temporary = os.path.join(folder, "tmp")
    os.makedirs(temporary)
    environment = dict(os.environ, AUTONOMY_CONFIG=os.path.join(folder, "autonomy.json"),
                       AUTONOMY_DATABASE=os.path.join(folder, "autonomy.db"), TMPDIR=temporary)
    database = os.path.join(folder, "autonomy.db")
    virtual = 0  # seconds the workers' clock is moved ahead, so dead workers' leases expire

    def run(arguments, **extra):
        return subprocess.run([binary] + arguments, env=dict(environment, **extra), cwd=folder,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def count(sql):
        with sqlite3.connect(database, timeout=30) as db:
            return db.execute(sql).fetchone()[0]

    enqueued = 0

    def top_up():
        nonlocal enqueued
        lines = "\n".join(json.dumps({"type": "effect", "payload": {"n": enqueued + i}}) for i in range(50))
        result = subprocess.run([binary, "enqueue", "--batch", "-"], input=lines, env=environment, cwd=folder,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            sys.exit(f"enqueue failed: {result.stderr}")
        enqueued += 50

    top_up()
    kills = mid_work = 0
    started = time.monotonic()
    while mid_work < args.kills:
        if count("SELECT COUNT(*) FROM tasks WHERE state = 'queued'") < 10:
            top_up()
        virtual += 3
        worker = subprocess.Popen([binary, "work-once", "--drain"], cwd=folder, start_new_session=True,
                                  env=dict(environment, AUTONOMY_TEST_CLOCK_OFFSET=f"{virtual}s"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(random.uniform(0.01, 0.12))
        kill_session(worker.pid)
        worker.wait()
        kills += 1
        if count("SELECT COUNT(*) FROM tasks WHERE state IN ('running', 'verifying')") > 0:
            mid_work += 1
    # Let the workers finish everything: every lease of a dead worker has expired by now.
    for _ in range(100):
        virtual += 60
        run(["work-once", "--drain"], AUTONOMY_TEST_CLOCK_OFFSET=f"{virtual}s")
        if count("SELECT COUNT(*) FROM tasks WHERE state NOT IN ('done', 'dead')") == 0:
            break
    elapsed = time.monotonic() - started

    states = {}
    with sqlite3.connect(database) as db:
        for state, number in db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state"):
            states[state] = number
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    rows = sum(states.values())
    lost = (enqueued - rows) + sum(n for s, n in states.items() if s not in ("done", "dead"))
    with open(os.path.join(folder, "effects.txt")) as handle:
        effects = [line.strip() for line in handle if line.strip()]
    repeated = len(effects) - len(set(effects))
    ledger = run(["ledger", "verify"])
    left = [name for name in os.listdir(temporary) if name.startswith("autonomy-")]

    print(f"kills: {kills} in all, {mid_work} while a task was running or verifying ({elapsed:.0f}s)")
    print(f"tasks: {enqueued} enqueued; by state: {json.dumps(states, sort_keys=True)}")
    print(f"tasks lost: {lost} (must be 0)")
    print(f"side effects repeated: {repeated} (must be 0); {len(set(effects))} tasks had their effect")
    print(f"PRAGMA integrity_check: {integrity}")
    print(f"ledger verify: {ledger.stdout.strip() or ledger.stderr.strip()}")
    print(f"payload files left: {len(left)} (must be 0){': ' + ', '.join(sorted(left)[:5]) if left else ''}")
    print(f"folder: {folder}")
    failed = lost != 0 or repeated != 0 or integrity != "ok" or ledger.returncode != 0 or states.get("dead", 0) > 0 or left
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
