#define _GNU_SOURCE
#include "SystemShims.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int autonomy_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int autonomy_mkstemp_cloexec(char *template) { return mkostemp(template, O_CLOEXEC); }

int autonomy_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int autonomy_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int autonomy_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int autonomy_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int autonomy_has_exited(pid_t pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        return -1;
    }
    return info.si_pid != 0;
}

void autonomy_name_this_thread(const char *name) {
    pthread_setname_np(pthread_self(), name);
}

int autonomy_sqlite_without_memory_statistics(void) { return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }
