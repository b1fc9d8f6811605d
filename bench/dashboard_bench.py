#!/usr/bin/env python3
"""How long the dashboard's pages take on a large database: 100,000 tasks (from 20 producers,
about 5,000 subjects, a share finished over the last day, some dead, some waiting for approval)
and a realistic ledger of 1,000,000 rows (bench/audit_ledger.py). Target: each page under 300 ms.

Each page is fetched 7 times, warm, by one client on loopback; the median is printed, beside the
same server's smallest page (the login page: no database) as the baseline, measured in the same run.

    bench/dashboard_bench.py [BINARY]        (default: .build-static/release/autonomy)
"""
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BINARY = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", ".build-static/release/autonomy"))
TASKS = 100_000
LEDGER = 1_000_000
TYPES = ["send_email", "daily_report", "triage_ticket", "reindex_search", "sync_crm", "backup_db", "scrape_prices",
         "summarise_thread"]


def main():
    folder = tempfile.mkdtemp(prefix="autonomy-dashboard-bench-")
    server = None
    try:
        env = dict(os.environ, AUTONOMY_CONFIG=f"{folder}/autonomy.json", AUTONOMY_DATABASE=f"{folder}/autonomy.db",
                   HOME=folder)

        def autonomy(*arguments, stdin=None):
            done = subprocess.run([BINARY, *arguments], env=env, input=stdin, capture_output=True)
            if done.returncode != 0:
                raise SystemExit(f"autonomy {arguments[0]}: exit {done.returncode}: {done.stderr.decode()[:300]}")
            return done.stdout

        config = {"version": 1, "task_types": {
            name: {"owner": "ops", "safety": "dangerous" if name == "send_email" else "safe",
                   "handler": {"exec": {"argv": ["true"]}}, "verify": [{"command": {"argv": ["true"]}}]}
            for name in TYPES}}
        with open(f"{folder}/autonomy.json", "w") as handle:
            json.dump(config, handle)
        signers = [next(line for line in autonomy("operator", "init", "--key", f"{folder}/{name}", "--principal", name)
                        .decode().splitlines() if line.startswith(name + " "))
                   for name in ("elad", "autonomy-web")]
        with open(f"{folder}/allowed_signers", "w") as handle:
            handle.write("\n".join(signers) + "\n")
        config["approvals"] = {"allowed_signers": f"{folder}/allowed_signers"}
        config["serve"] = {"signing_key": f"{folder}/autonomy-web"}
        with open(f"{folder}/autonomy.json", "w") as handle:
            json.dump(config, handle)

        started = time.perf_counter()
        autonomy("enqueue", "daily_report")
        subprocess.run([sys.executable, os.path.join(HERE, "audit_ledger.py"), f"{folder}/autonomy.db", str(LEDGER)],
                       check=True, stdout=subprocess.DEVNULL)
        random.seed(7)
        lines = "\n".join(json.dumps({
            "type": random.choice(TYPES[1:]) if i % 50 else "send_email", "payload": {"n": i},
            "source": f"bot-{i % 20}", "subject": f"customer {random.randrange(5000)}"}) for i in range(TASKS))
        autonomy("enqueue", "--batch", "-", stdin=lines.encode())
        # Finish most of them behind autonomy's back, over the last day, a few dead.
        now_ms = int(time.time() * 1000)
        subprocess.run(["sqlite3", f"{folder}/autonomy.db", f"""
            UPDATE tasks SET state = CASE WHEN id % 97 = 0 THEN 'dead' ELSE 'done' END,
                             finished_at = {now_ms} - (id * 7919 % 86400000)
            WHERE state = 'queued' AND id % 10 != 0;"""], check=True)
        print(f"database: {TASKS:,} tasks and {LEDGER:,} ledger rows, made in {time.perf_counter() - started:.0f} s")

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([BINARY, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while "listening on" not in server.stderr.readline():
            pass
        login = autonomy("serve", "login", "--operator", "elad").decode().strip()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/login", body=f"t={login.split('#t=')[1]}",
                           headers={"Content-Type": "application/x-www-form-urlencoded",
                                    "Origin": f"http://127.0.0.1:{port}"})
        answer = connection.getresponse()
        answer.read()
        cookie = answer.getheader("Set-Cookie").split(";")[0]

        def fetch(path):
            times = []
            for _ in range(7):
                start = time.perf_counter()
                connection.request("GET", path, headers={"Cookie": cookie})
                response = connection.getresponse()
                body = response.read()
                times.append(time.perf_counter() - start)
                if response.status != 200:
                    raise SystemExit(f"{path}: {response.status} {body[:200]!r}")
            return statistics.median(times) * 1000

        baseline = fetch("/login")
        print(f"{'page':<40} {'median':>10} {'vs /login':>10}  target")
        print(f"{'/login (baseline: no database)':<40} {baseline:>8.1f} ms {1:>9.1f}x")
        failures = 0
        for path in ["/", "/ledger", "/ledger?event=failed", "/ledger?type=send_email&since=7d", "/tasks/50000",
                     "/sources", "/subjects", "/subjects?search=customer%2042", "/subject?name=customer%2042",
                     "/budget", "/audits", "/tasks?state=dead", "/map", "/map?since=7d", "/map?since=30d"]:
            figure = fetch(path)
            ok = figure < 300
            failures += not ok
            print(f"{path:<40} {figure:>8.1f} ms {figure / baseline:>9.1f}x  < 300 ms {'ok' if ok else 'MISSED'}")
        return 1 if failures else 0
    finally:
        if server:
            server.terminate()
            server.wait(timeout=10)
        if os.environ.get("KEEP"):
            print(f"kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
