/*
 * The floor of `autonomy enqueue --batch`: the rows one batch writes per task, written straight
 * against SQLite's C API, prepared once, in one transaction, with nothing else around them (no
 * JSON to read, no configuration, no Swift). Per task: the payload's SHA-256, the task row, and one
 * hash-chained ledger row (`enqueued`) whose SHA-256 covers the previous hash and the row's fields:
 * the same work as autonomy's (not its exact input, so `ledger verify` refuses these rows). What
 * this program reaches is the most any implementation of autonomy's batch enqueue can reach on
 * this machine, in the same run, while it keeps the same rows and indexes. The time ends when the database is
 * closed, as a batch's does: the last connection checkpoints the WAL into it.
 *
 *   cc -O2 -o batch_floor batch_floor.c -lsqlite3 -lcrypto      (it includes sqlite_floor.h)
 *   batch_floor DATABASE N
 *
 * DATABASE is one that `autonomy` made (so the schema, indexes and triggers are autonomy's own).
 * Prints the tasks per second.
 */
#include <string.h>
#include <time.h>

#include "sqlite_floor.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: batch_floor DATABASE N\n");
        return 64;
    }
    open_database(argv[1], "FULL");
    long n = atol(argv[2]);
    sqlite3_stmt *task = prepare(
        "INSERT INTO tasks (type, state, priority, run_at, payload, payload_sha256, idempotency_key, source, "
        "subject, max_attempts, created_at, updated_at) VALUES ('noop', 'queued', 0, ?, ?, ?, NULL, NULL, NULL, "
        "NULL, ?, ?)");
    sqlite3_stmt *ledger = prepare(
        "INSERT INTO ledger (at, task_id, type, event, attempt, detail, prev_hash, hash) "
        "VALUES (?, ?, 'noop', 'enqueued', NULL, ?, ?, ?)");

    char head[65];
    ledger_head(head);

    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long long at = (long long)start.tv_sec * 1000;
    check(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), "begin");
    for (long i = 0; i < n; i++) {
        char payload[128], payload_hash[65], detail[256], text[512], hash[65];
        int length = snprintf(payload, sizeof payload, "{\"n\":%ld,\"to\":\"user%ld@example.com\"}", i, i);
        sha256_hex(payload, (size_t)length, payload_hash);
        sqlite3_bind_int64(task, 1, at);
        sqlite3_bind_text(task, 2, payload, length, SQLITE_STATIC);
        sqlite3_bind_text(task, 3, payload_hash, 64, SQLITE_STATIC);
        sqlite3_bind_int64(task, 4, at);
        sqlite3_bind_int64(task, 5, at);
        step(task);
        long long id = sqlite3_last_insert_rowid(db);
        int detail_length = snprintf(detail, sizeof detail,
                                     "{\"payload_sha256\":\"%s\",\"source\":null,\"state\":\"queued\"}", payload_hash);
        int text_length =
            snprintf(text, sizeof text, "%s|%lld|%lld|noop|enqueued||%s", head, at, id, detail);
        sha256_hex(text, (size_t)text_length, hash);
        sqlite3_bind_int64(ledger, 1, at);
        sqlite3_bind_int64(ledger, 2, id);
        sqlite3_bind_text(ledger, 3, detail, detail_length, SQLITE_STATIC);
        sqlite3_bind_text(ledger, 4, head, 64, SQLITE_STATIC);
        sqlite3_bind_text(ledger, 5, hash, 64, SQLITE_STATIC);
        step(ledger);
        memcpy(head, hash, 65);
    }
    check(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), "commit");
    for (sqlite3_stmt *statement = NULL; (statement = sqlite3_next_stmt(db, NULL)) != NULL;) sqlite3_finalize(statement);
    /* Closed within the time, as `autonomy enqueue` closes: the last connection checkpoints the WAL. */
    check(sqlite3_close(db), "close");
    clock_gettime(CLOCK_MONOTONIC, &end);
    double seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
    printf("%.0f\n", (double)n / seconds);
    return 0;
}
