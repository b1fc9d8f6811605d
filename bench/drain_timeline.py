#!/usr/bin/env python3
"""Where a drained task's time goes, from the scheduler's own events: autonomy beside its floor.

Drains N `true` tasks with `autonomy work-once --drain` and with bench/peers/floor.c (autonomy's
per-task statements in C), each under `perf record -a` of the scheduler's events, and splits every
task's cycle into what the worker waits for and what it does itself:

  clone -> exec     the handler's start: posix_spawn's child, then the kernel's execve
  exec -> exit      the handler running (`true`)
  exit -> clone     the handler's exit, the worker's wake-up, and its own work until it starts
                    the next handler (recording the attempt, claiming the next task, the commit)

Also counted: handlers the kernel placed on another CPU than the worker's when it made them, those
it moved to another CPU as they `execve`d (it moves a new program to an idle CPU when it judges
its own CPU busy), and wake-ups of the worker on another CPU than the exiting handler's.

  sudo python3 bench/drain_timeline.py --binary .build-static/release/autonomy [--tasks 300]
      [--synchronous normal|full]

Needs `perf` and the right to trace the scheduler system-wide (root, or kernel.perf_event_paranoid
at -1), and `cc` with libsqlite3 and libcrypto for the floor. Not a test: it prints medians.
"""
import argparse
import bisect
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

from drain_ab import queue

HERE = os.path.dirname(os.path.abspath(__file__))
COUNTED = 5
SEGMENTS = ("clone -> exec", "exec -> exit", "exit -> clone")
EVENTS = "sched:sched_wakeup,sched:sched_wakeup_new,sched:sched_process_exec,sched:sched_process_exit"
LINE = re.compile(r"\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)")


def traced(command, env, folder, name):
    data = os.path.join(folder, name + ".perf")
    subprocess.run(["perf", "record", "-a", "-q", "-m", "2048", "-e", EVENTS, "-o", data, "--"] + command, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,cpu,time,event,trace"],
                            capture_output=True, text=True, check=True).stdout
    events = []
    for line in script.splitlines():
        match = LINE.match(line)
        if match:
            comm, tid, cpu, time, event, rest = match.groups()
            events.append((float(time), comm, int(tid), int(cpu), event.split(":")[-1], rest))
    return events


def cycles(events):
    """The segments of each task's cycle, in microseconds, and the cross-CPU counts."""
    spawners = {}
    for time, comm, tid, cpu, event, rest in events:
        if event == "sched_wakeup_new":
            spawners[tid] = spawners.get(tid, 0) + 1
    worker = max(spawners, key=spawners.get)
    execs = {tid: (t, cpu) for t, comm, tid, cpu, event, rest in events if event == "sched_process_exec"}
    # The worker's children that became programs (a thread it started is no handler), with the
    # CPU the worker ran on and the CPU the kernel placed the child on.
    clones = [(t, cpu, int(re.search(r"pid=(\d+)", rest).group(1)), int(re.search(r"target_cpu=(\d+)", rest).group(1)))
              for t, comm, tid, cpu, event, rest in events if event == "sched_wakeup_new" and tid == worker]
    clones = [clone for clone in clones if clone[2] in execs]
    exits = {tid: (t, cpu) for t, comm, tid, cpu, event, rest in events if event == "sched_process_exit"}
    wakes = [(t, int(re.search(r"target_cpu=(\d+)", rest).group(1)))
             for t, comm, tid, cpu, event, rest in events
             if event == "sched_wakeup" and re.search(rf"\bpid={worker}\b", rest)]
    wake_times = [w[0] for w in wakes]

    segments = {name: [] for name in SEGMENTS}
    placed_elsewhere = moved_at_exec = woken_elsewhere = counted = 0
    for (start, start_cpu, child, placed_cpu), (after, _, _, _) in zip(clones, clones[1:]):
        if child not in execs or child not in exits:
            continue
        (exec_time, exec_cpu), (exit_time, exit_cpu) = execs[child], exits[child]
        for name, value in zip(segments, (exec_time - start, exit_time - exec_time, after - exit_time)):
            segments[name].append(value * 1e6)
        counted += 1
        placed_elsewhere += placed_cpu != start_cpu
        moved_at_exec += exec_cpu != placed_cpu
        index = bisect.bisect_left(wake_times, exit_time)
        woken_elsewhere += index < len(wakes) and wakes[index][0] < after and wakes[index][1] != exit_cpu
    periods = [(b[0] - a[0]) * 1e6 for a, b in zip(clones, clones[1:])]
    return segments, statistics.median(periods), placed_elsewhere, moved_at_exec, woken_elsewhere, counted


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--synchronous", choices=["normal", "full"], default="normal")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        parser.error(f"{args.binary} is not an executable: build one with `make build BUILD_DIR=.build-static`")
    for tool in ("perf", "cc"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed here: this script needs perf and a C compiler")
    with tempfile.TemporaryDirectory() as folder:
        floor = os.path.join(folder, "floor-program")
        subprocess.run(["cc", "-O2", "-o", floor, os.path.join(HERE, "peers", "floor.c"), "-lsqlite3", "-lcrypto"],
                       check=True)
        results = {}
        for name in ("autonomy", "floor"):
            place = os.path.join(folder, name)
            os.mkdir(place)
            env = queue(place, binary, args.tasks, args.synchronous)
            command = ([binary, "work-once", "--drain", "--max-tasks", str(args.tasks)] if name == "autonomy"
                       else [floor, env["AUTONOMY_DATABASE"], args.synchronous, str(args.tasks)])
            results[name] = cycles(traced(command, env, folder, name))
    mine, floors = results["autonomy"], results["floor"]
    print(f"{args.tasks} `true` tasks at {args.synchronous.upper()}, medians in microseconds "
          f"(over {mine[COUNTED]} and {floors[COUNTED]} whole cycles)")
    print(f"{'':<32} {'autonomy':>9} {'floor':>9}")
    for name in SEGMENTS:
        print(f"{name:<32} {statistics.median(mine[0][name]):>9.0f} {statistics.median(floors[0][name]):>9.0f}")
    print(f"{'a task, clone to clone':<32} {mine[1]:>9.0f} {floors[1]:>9.0f}")
    for label, index in (("handlers placed on another CPU than the worker's at fork", 2),
                         ("handlers moved to another CPU as they execve", 3), ("worker woken on another CPU", 4)):
        print(f"{label}: autonomy {mine[index]} of {mine[COUNTED]}, floor {floors[index]} of {floors[COUNTED]}")


if __name__ == "__main__":
    sys.exit(main())
