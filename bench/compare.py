#!/usr/bin/env python3
"""Two builds of autonomy side by side, alternating, on the same machine: the per-task cost of a
drain (on a fresh database and beside a 200,000-row ledger) and `enqueue --batch` of 100,000.
For changes meant to be neutral, where one run of queue_bench.py is too noisy to tell.

Usage: bench/compare.py --base OLD/autonomy --new NEW/autonomy [--rounds 4]
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import queue_bench as qb  # noqa: E402  (its config and fresh-folder helper)


def batch(count, key="n"):
    return "\n".join('{"type":"noop","payload":{"%s":%d}}' % (key, i) for i in range(count)).encode()


def drain_ms_per_task(binary, env, tasks=500):
    subprocess.run([binary, "enqueue", "--batch", "-"], env=env, check=True, stdout=subprocess.DEVNULL,
                   input=batch(tasks, "m"))
    started = time.perf_counter()
    subprocess.run([binary, "work-once", "--drain", "--max-tasks", str(tasks)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - started) / tasks * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--new", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="autonomy-compare-")
    try:
        path, env = qb.fresh(root, "big")
        subprocess.run([args.base, "enqueue", "--batch", "-"], env=env, check=True, stdout=subprocess.DEVNULL,
                       input=batch(200_000))
        database = os.path.join(path, "autonomy.db")
        subprocess.run(["sqlite3", database, "UPDATE tasks SET state='done', finished_at=0"], check=True)
        subprocess.run(["sqlite3", database, "PRAGMA wal_checkpoint(TRUNCATE)"], check=True, stdout=subprocess.DEVNULL)
        figures = {}
        for round in range(args.rounds):
            for name, binary in (("base", args.base), ("new", args.new)):
                big, big_env = qb.fresh(root, f"{name}-big-{round}")
                shutil.copy(database, os.path.join(big, "autonomy.db"))
                figures.setdefault((name, "drain ms/task, 200,000-row ledger"), []).append(
                    drain_ms_per_task(binary, big_env))
                small, small_env = qb.fresh(root, f"{name}-fresh-{round}")
                figures.setdefault((name, "drain ms/task, fresh database"), []).append(
                    drain_ms_per_task(binary, small_env))
                many, many_env = qb.fresh(root, f"{name}-batch-{round}")
                started = time.perf_counter()
                subprocess.run([binary, "enqueue", "--batch", "-"], env=many_env, check=True,
                               stdout=subprocess.DEVNULL, input=batch(100_000))
                figures.setdefault((name, "enqueue --batch 100,000, s"), []).append(time.perf_counter() - started)
                for folder in (big, small, many):
                    shutil.rmtree(folder)
        for measure in sorted({m for _, m in figures}):
            base, new = statistics.median(figures[("base", measure)]), statistics.median(figures[("new", measure)])
            print(f"{measure:<36} base {base:8.3f}   new {new:8.3f}   ratio {new / base:.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
