/*
 * What the floors (bench/peers/floor.c, bench/batch_floor.c) share: one database, statements
 * prepared once, any SQLite error ending the program, and SHA-256 as lowercase hex.
 */
#ifndef SQLITE_FLOOR_H
#define SQLITE_FLOOR_H

#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

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
