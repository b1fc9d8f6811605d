/*
 * The drain's floor: the statements a draining `autonomy work-once` runs per task, written
 * straight against SQLite's C API, prepared once, with nothing else around them (no firewall
 * logic, no configuration, no Swift, no pipes, no time-outs). What this program reaches is the
 * most any implementation of autonomy's drain can reach on this machine while it keeps the same
 * rows: a lease on the task, three hash-chained ledger rows (claimed, executed, done), the task's
 * outcome, and one commit per task that records the attempt and claims the next one.
 *
 *   cc -O2 -o floor floor.c -lsqlite3 -lcrypto      (it includes ../sqlite_floor.h)
 *   floor DATABASE full|normal N
 *
 * DATABASE is one `autonomy enqueue --batch` filled (so the schema, indexes and triggers are
 * autonomy's own); it is drained the way `work-once --drain` drains it, a child `true` per task.
 * Prints the tasks per second.
 */
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "../sqlite_floor.h"

extern char **environ;

static char head[65];

static long long now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static sqlite3_stmt *ledger_insert;

/* One ledger row: its hash covers the previous hash and the row's fields, the same work as autonomy's
 * (not its exact input: `ledger verify` refuses these rows). */
static void append(long long at, long long task, const char *event, int attempt, const char *detail) {
    char text[512];
    int length = snprintf(text, sizeof text, "%s|%lld|%lld|noop|%s|%d|%s", head, at, task, event, attempt, detail);
    char hash[65];
    sha256_hex(text, (size_t)length, hash);
    sqlite3_bind_int64(ledger_insert, 1, at);
    sqlite3_bind_int64(ledger_insert, 2, task);
    sqlite3_bind_text(ledger_insert, 3, event, -1, SQLITE_STATIC);
    sqlite3_bind_int(ledger_insert, 4, attempt);
    sqlite3_bind_text(ledger_insert, 5, detail, -1, SQLITE_STATIC);
    sqlite3_bind_text(ledger_insert, 6, head, 64, SQLITE_TRANSIENT);
    sqlite3_bind_text(ledger_insert, 7, hash, 64, SQLITE_TRANSIENT);
    step(ledger_insert);
    memcpy(head, hash, 65);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: floor DATABASE full|normal N\n");
        return 64;
    }
    open_database(argv[1], argv[2]);
    long n = atol(argv[3]);

    sqlite3_stmt *begin = prepare("BEGIN IMMEDIATE");
    sqlite3_stmt *commit = prepare("COMMIT");
    sqlite3_stmt *claim = prepare(
        "SELECT id, attempts FROM tasks INDEXED BY tasks_claim_order WHERE state = 'queued' AND run_at <= ? "
        "ORDER BY priority DESC, run_at, id LIMIT 1");
    sqlite3_stmt *lease = prepare(
        "UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_token = ?, lease_expires_at = ?, "
        "started_at = ?, updated_at = ? WHERE id = ? AND state = 'queued'");
    sqlite3_stmt *holds = prepare("SELECT state, lease_token FROM tasks WHERE id = ?");
    sqlite3_stmt *done = prepare(
        "UPDATE tasks SET state = 'done', exit_code = ?, lease_token = NULL, lease_expires_at = NULL, "
        "finished_at = ?, updated_at = ? WHERE id = ? AND lease_token = ?");
    ledger_insert = prepare(
        "INSERT INTO ledger (at, task_id, type, event, attempt, detail, prev_hash, hash) "
        "VALUES (?, ?, 'noop', ?, ?, ?, ?, ?)");

    ledger_head(head);

    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long long current = 0;
    int attempt = 0, status = 0;
    const char *token = "5f0d1c3e-8a4b-4b1e-9c2d-7e6f5a4b3c2d";
    long count = 0;
    for (;;) {
        long long at = now_ms();
        step(begin);
        if (current) {
            /* The attempt's end: the lease is still ours, then executed and done. */
            sqlite3_bind_int64(holds, 1, current);
            check(sqlite3_step(holds), "holds");
            if (sqlite3_column_text(holds, 1) == NULL || strcmp((const char *)sqlite3_column_text(holds, 1), token)) {
                fprintf(stderr, "error: lost the lease on task %lld\n", current);
                return 1;
            }
            sqlite3_reset(holds);
            append(at, current, "executed", attempt, "{\"exit_code\":0,\"stdout_bytes\":0,\"stdout_truncated\":false}");
            sqlite3_bind_int(done, 1, WEXITSTATUS(status));
            sqlite3_bind_int64(done, 2, at);
            sqlite3_bind_int64(done, 3, at);
            sqlite3_bind_int64(done, 4, current);
            sqlite3_bind_text(done, 5, token, -1, SQLITE_STATIC);
            step(done);
            append(at, current, "done", attempt, "{\"evidence\":\"handler exited 0 (the type declares no verifier)\"}");
            count++;
        }
        /* The next claim, in the same transaction. */
        sqlite3_bind_int64(claim, 1, at);
        int rc = sqlite3_step(claim);
        check(rc, "claim");
        if (rc != SQLITE_ROW) {
            sqlite3_reset(claim);
            step(commit);
            break;
        }
        current = sqlite3_column_int64(claim, 0);
        attempt = sqlite3_column_int(claim, 1) + 1;
        sqlite3_reset(claim);
        sqlite3_bind_text(lease, 1, token, -1, SQLITE_STATIC);
        sqlite3_bind_int64(lease, 2, at + 60000);
        sqlite3_bind_int64(lease, 3, at);
        sqlite3_bind_int64(lease, 4, at);
        sqlite3_bind_int64(lease, 5, current);
        step(lease);
        append(at, current, "claimed", attempt, "{\"approval_id\":null,\"lease_expires_at\":\"2026-11-26T14:00:35Z\"}");
        step(commit);

        pid_t child;
        char *child_argv[] = {"true", NULL};
        if (posix_spawnp(&child, "true", NULL, NULL, child_argv, environ) != 0) {
            perror("posix_spawnp");
            return 1;
        }
        waitpid(child, &status, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    if (count != n) {
        fprintf(stderr, "error: drained %ld tasks, expected %ld\n", count, n);
        return 1;
    }
    double seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
    printf("%.0f\n", (double)n / seconds);
    return 0;
}
