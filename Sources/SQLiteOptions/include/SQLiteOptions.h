#ifndef AUTONOMY_SQLITE_OPTIONS_H
#define AUTONOMY_SQLITE_OPTIONS_H

#include <sqlite3.h>

/// sqlite3_db_config() is variadic, so Swift cannot call it: these wrap the options autonomy sets.

/// Leaves the WAL in place when a connection closes instead of checkpointing it: every short-lived
/// `autonomy` process would otherwise pay a checkpoint and an fsync on exit. Checkpoints still
/// happen as the WAL grows (wal_autocheckpoint). Returns an SQLite result code.
int autonomy_sqlite_skip_checkpoint_on_close(sqlite3 *db);

#endif
