/*
 * What the floors (bench/peers/floor.c, bench/batch_floor.c) share: one database opened as autonomy
 * opens it, statements prepared once, any SQLite error ending the program, the ledger's newest
 * hash, and SHA-256 as lowercase hex.
 */
#ifndef SQLITE_FLOOR_H
#define SQLITE_FLOOR_H

#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sqlite3 *db;

static void check(int rc, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) {
        fprintf(stderr, "error: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static sqlite3_stmt *prepare(const char *sql) {
    sqlite3_stmt *statement;
    check(sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, NULL), sql);
    return statement;
}

static void step(sqlite3_stmt *statement) {
    check(sqlite3_step(statement), sqlite3_sql(statement));
    sqlite3_reset(statement);
}

/* Opens `path` in WAL mode at `synchronous` (FULL or NORMAL), waiting up to 5 s for a lock. */
static void open_database(const char *path, const char *synchronous) {
    check(sqlite3_open(path, &db), "open");
    char pragmas[200];
    snprintf(pragmas, sizeof pragmas, "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA busy_timeout=5000",
             synchronous);
    check(sqlite3_exec(db, pragmas, NULL, NULL, NULL), "pragmas");
}

/* The hash of the ledger's newest row, or the genesis hash (64 zeros) for an empty ledger. */
static void ledger_head(char head[65]) {
    memset(head, '0', 64);
    head[64] = 0;
    sqlite3_stmt *tail;
    check(sqlite3_prepare_v2(db, "SELECT hash FROM ledger ORDER BY id DESC LIMIT 1", -1, &tail, NULL), "tail");
    int rc = sqlite3_step(tail);
    check(rc, "the ledger's newest row");
    if (rc == SQLITE_ROW) memcpy(head, sqlite3_column_text(tail, 0), 64);
    sqlite3_finalize(tail);
}

/* The SHA-256 of `length` bytes of `text`, as 64 lowercase hex digits and a NUL. */
static void sha256_hex(const char *text, size_t length, char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    unsigned char digest[32];
    unsigned int size;
    EVP_Digest(text, length, digest, &size, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = 0;
}

#endif
