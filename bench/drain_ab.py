#!/usr/bin/env python3
"""Compares the drain of two (or more) autonomy binaries, alternating them so a noisy machine
weighs on each alike: the median tasks/s over --runs drains of --tasks `true` tasks at FULL (or --synchronous normal), and
with --instructions the instructions a drained task costs in the worker (callgrind: the drain of
3N tasks less the drain of N, over 2N, so start-up drops out).

    python3 bench/drain_ab.py OLD_BINARY NEW_BINARY [--tasks 2000] [--runs 7] [--instructions]

Release builds, as `make` makes them. valgrind cannot read the DWARF of a release build here, so
--instructions measures a copy with its debug info stripped (`objcopy --strip-debug`; the symbols
stay).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time


SYNCHRONOUS = "full"


def queue(folder, binary, tasks, synchronous=None):
    """Writes a configuration with one `true` type into `folder` and enqueues `tasks` of it in one
    batch; returns the environment that points autonomy at them."""
    config = {"version": 1, "worker": {"drain_max_seconds": 3600},
              "store": {"synchronous": synchronous or SYNCHRONOUS},
              "task_types": {"noop": {"safety": "safe", "handler": {"exec": {"argv": ["true"]}}}}}
    with open(os.path.join(folder, "autonomy.json"), "w") as handle:
        json.dump(config, handle)
    env = dict(os.environ, AUTONOMY_CONFIG=os.path.join(folder, "autonomy.json"),
               AUTONOMY_DATABASE=os.path.join(folder, "autonomy.db"))
    lines = "\n".join('{"type":"noop","payload":{"n":%d}}' % i for i in range(tasks))
    subprocess.run([binary, "enqueue", "--batch", "-"], env=env, input=lines.encode(), check=True,
                   stdout=subprocess.DEVNULL)
    return env


def drain_rate(binary, tasks):
    folder = tempfile.mkdtemp(prefix="autonomy-ab-")
    try:
        env = queue(folder, binary, tasks)
        start = time.perf_counter()
        subprocess.run([binary, "work-once", "--drain", "--max-tasks", str(tasks)], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return tasks / (time.perf_counter() - start)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def instructions(binary, count, queued):
    """Instructions of one `work-once --drain --max-tasks count` under callgrind, on a fresh queue."""
    folder = tempfile.mkdtemp(prefix="autonomy-cg-")
    try:
        stripped = os.path.join(folder, "autonomy")
        subprocess.run(["objcopy", "--strip-debug", binary, stripped], check=True)
        env = queue(folder, binary, queued)
        ran = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/out", stripped,
                              "work-once", "--drain", "--max-tasks", str(count)],
                             env=env, capture_output=True, text=True, check=True)
        return int(re.search(r"I\s+refs:\s+([\d,]+)", ran.stderr).group(1).replace(",", ""))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binaries", nargs="+")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full",
                        help="the store's durability (store.synchronous)")
    args = parser.parse_args()
    global SYNCHRONOUS
    SYNCHRONOUS = args.synchronous
    for binary in args.binaries:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            parser.error(f"{binary}: not an executable file (build it first: make)")
    rates = {binary: [] for binary in args.binaries}
    for _ in range(args.runs):
        for binary in args.binaries:
            rates[binary].append(drain_rate(binary, args.tasks))
    base = statistics.median(rates[args.binaries[0]])
    print(f"{args.tasks:,} `true` tasks at {SYNCHRONOUS.upper()}, {args.runs} alternating drains each; {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}")
    for binary in args.binaries:
        median = statistics.median(rates[binary])
        line = (f"{binary}: median {median:,.0f} tasks/s ({median / base:.2f}x the first), "
                f"range {min(rates[binary]):,.0f}-{max(rates[binary]):,.0f}")
        if args.instructions:
            n = 200
            per_task = (instructions(binary, 3 * n, 3 * n) - instructions(binary, n, 3 * n)) / (2 * n)
            line += f"; {per_task:,.0f} instructions a task"
        print(line)


if __name__ == "__main__":
    main()
