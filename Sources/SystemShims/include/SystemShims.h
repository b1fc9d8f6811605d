#ifndef AUTONOMY_SYSTEM_SHIMS_H
#define AUTONOMY_SYSTEM_SHIMS_H

#include <spawn.h>
#include <sys/types.h>

// GNU extensions the exec runner uses, which Swift's Glibc module does not show (it is built
// without _GNU_SOURCE). Each returns what the glibc function returns.

/// pipe2(fds, O_CLOEXEC).
int autonomy_pipe_cloexec(int fds[2]);
/// mkostemp(template, O_CLOEXEC): a new file, mode 0600, closed on exec (payload files).
int autonomy_mkstemp_cloexec(char *template);
/// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK).
int autonomy_eventfd(void);
/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34).
int autonomy_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int from);
/// posix_spawn_file_actions_addchdir_np (glibc 2.29).
int autonomy_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);

/// pidfd_open(2): a descriptor that becomes readable when the process exits, so one poll(2) waits
/// for a handler's output and its end together. glibc 2.36 declares no wrapper Swift can see, and
/// syscall() is variadic. Returns -1 with errno set (ENOSYS before Linux 5.3).
int autonomy_pidfd_open(pid_t pid);

/// Whether the child `pid` has ended, without reaping it (waitid with WNOWAIT): 1 yes, 0 not yet,
/// -1 with errno set. Where there is no pidfd, the exec runner asks this every 10 ms.
int autonomy_has_exited(pid_t pid);

/// sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0): SQLite stops keeping memory statistics, which
/// took a process-wide mutex on every allocation it made and freed (about 320 a drained task).
/// Only before SQLite is initialised (its first connection); later it returns SQLITE_MISUSE and
/// changes nothing. sqlite3_config is variadic, which Swift cannot call.
int autonomy_sqlite_without_memory_statistics(void);

/// Names the calling thread (at most 15 bytes), as `top -H`, `ps -L` and `perf` show it.
void autonomy_name_this_thread(const char *name);

#endif
