#!/usr/bin/env python3
"""Fills an autonomy database with a realistic ledger for the audit benchmark: tasks of eight types
over the last 14 days, each enqueued, claimed, executed, verified and done, with a share that fail
(retried or dead, with their error text in ledger_notes), a few lease expiries and model calls.
The rows continue the database's own hash chain, in the layout documented on `LedgerChain`, so
`ledger verify` (and the audit, which runs it) passes.

Usage: bench/audit_ledger.py DATABASE ROWS
"""
import hashlib
import json
import random
import sqlite3
import struct
import sys
import time


def integer(v): return b'\x00' if v is None else b'\x01' + struct.pack('>q', v)
def real(v): return b'\x00' if v is None else b'\x03' + struct.pack('>d', v)
def text(v): return b'\x00' if v is None else b'\x02' + struct.pack('>Q', len(v.encode())) + v.encode()


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=False)


ERRORS = [
    "exited with status 1: connection refused to 10.0.%d.%d:5432",
    "exited with status 2: /srv/data/run-%d/input.csv: no such file",
    "timed out after 5m",
    "exited with status 1: HTTP 503 from https://api.example.com/v1/items/%d",
]
TYPES = ["send_email", "daily_report", "triage_ticket", "reindex_search", "sync_crm", "backup_db", "scrape_prices",
         "summarise_thread"]


def main():
    path, target = sys.argv[1], int(sys.argv[2])
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    last = db.execute("SELECT id, hash FROM ledger ORDER BY id DESC LIMIT 1").fetchone()
    next_id, prev = (last[0] + 1, last[1]) if last else (1, '0' * 64)
    next_task = (db.execute("SELECT MAX(id) FROM tasks").fetchone()[0] or 0) + 1000
    now = int(time.time() * 1000)
    rng = random.Random(7)
    events = []  # (at, task, type, event, attempt, duration, cost, detail, note), in time order later

    def event(at, task, type_, name, attempt=None, duration=None, cost=None, detail=None, note=None):
        if note is not None:
            detail = dict(detail or {}, error_bytes=len(note.encode()),
                          error_sha256=hashlib.sha256(note.encode()).hexdigest())
        events.append((at, task, type_, name, attempt, duration, cost, None if detail is None else canonical(detail),
                       note))

    start = now - 14 * 86_400_000
    while len(events) < target:
        task = next_task
        next_task += 1
        type_ = rng.choice(TYPES)
        # The last week is worse for two types (drift, dead tasks) and slower for one.
        at = start + int(rng.random() * (14 * 86_400_000 - 3_600_000))
        recent = at > now - 7 * 86_400_000
        failing = rng.random() < (0.25 if recent and type_ in ("sync_crm", "scrape_prices") else 0.04)
        event(at, task, type_, "enqueued", detail={"payload_sha256": "0" * 64, "source": None, "state": "queued"})
        attempts = 1 + (rng.random() < 0.5 if failing else 0)
        for attempt in range(1, attempts + 1):
            at += rng.randint(100, 60_000)
            event(at, task, type_, "claimed", attempt,
                  detail={"approval_id": None, "lease_expires_at": "2026-11-20T09:01:00.000Z"})
            duration = int(rng.lognormvariate(7, 1.2)) * (3 if recent and type_ == "reindex_search" else 1)
            at += duration
            if rng.random() < 0.002:
                event(at, task, type_, "lease_expired", attempt, detail={"state": "running"})
                continue
            error = None
            if failing:
                template = rng.choice(ERRORS)
                error = template % tuple(rng.randint(1, 250) for _ in range(template.count('%d')))
            event(at, task, type_, "executed", attempt, duration,
                  detail={"exit_code": 1 if error else 0, "stdout_bytes": 0, "stdout_truncated": False}, note=error)
            if type_ == "triage_ticket":
                event(at, task, type_, "llm_call", attempt, 900, 0.0002, detail={"model": "mini", "tier": "cheap"})
            if error:
                name = "dead" if attempt == attempts else "retry_scheduled"
                event(at + 1, task, type_, name, attempt, detail={"attempts": attempt}, note=error)
            else:
                event(at + 1, task, type_, "verified", attempt, 5,
                      detail={"index": 0, "looks": 1, "outcome": "pass", "verifier": "json"})
                event(at + 2, task, type_, "done", attempt, duration)
    # Appended in time order, as writers append them.
    events.sort(key=lambda e: e[0])
    rows, notes = [], []
    for at, task, type_, name, attempt, duration, cost, detail, note in events[:target]:
        digest = hashlib.sha256(prev.encode() + integer(next_id) + integer(at) + integer(task) + text(type_)
                                + text(name) + integer(attempt) + integer(duration) + real(cost)
                                + text(detail)).hexdigest()
        rows.append((next_id, at, task, type_, name, attempt, duration, cost, detail, prev, digest))
        if note is not None:
            notes.append((next_id, 'error', task, note))
        prev = digest
        next_id += 1
        if len(rows) == 200_000:
            flush(db, rows, notes)
            rows, notes = [], []
    flush(db, rows, notes)
    db.close()


def flush(db, rows, notes):
    db.executemany("INSERT INTO ledger (id, at, task_id, type, event, attempt, duration_ms, cost_usd, detail, "
                   "prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.executemany("INSERT INTO ledger_notes (ledger_id, field, task_id, text) VALUES (?,?,?,?)", notes)
    db.commit()


if __name__ == "__main__":
    main()
