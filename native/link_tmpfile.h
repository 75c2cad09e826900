/*
 * Naming an unnamed (O_TMPFILE) file: linkat(2) of the descriptor itself (AT_EMPTY_PATH) where
 * the kernel allows it, else of its /proc/self/fd link (AT_SYMLINK_FOLLOW). Shared by both addons.
 *
 * AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH before Linux 6.10, and since then, without it, a file
 * opened with the caller's own credentials. It skips the walk of "/proc/self/fd/N" (five
 * components, a magic link and a ptrace check): about 3 us of a small object's 20 on tmpfs.
 * Refused, it fails with ENOENT, which is also what a missing objects/XX folder gives: so until
 * one AT_EMPTY_PATH link has worked, an ENOENT is asked again through /proc, and the first
 * success there settles the question for the process (every thread; a race only asks twice).
 * VERITREE_LINK_VIA_PROC (set, any value) takes the /proc way from the start: how the tests walk
 * the path an older kernel or an unprivileged user takes.
 */
#ifndef VERITREE_LINK_TMPFILE_H
#define VERITREE_LINK_TMPFILE_H
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* 0: not known yet; 1: AT_EMPTY_PATH works here; -1: it is refused here. Read and written with
 * relaxed atomics: pool workers are threads of one process. */
static int link_empty_path_state = 0;

/* 0, or the errno of the link (EEXIST when `name` is taken: never replaced). */
static inline int link_tmpfile(int fd, int dirfd, const char *name) {
  int state = __atomic_load_n(&link_empty_path_state, __ATOMIC_RELAXED);
  if (state == 0 && getenv("VERITREE_LINK_VIA_PROC") != NULL) {
    state = -1;
    __atomic_store_n(&link_empty_path_state, -1, __ATOMIC_RELAXED);
  }
  if (state >= 0) {
    if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0) {
      if (state == 0) __atomic_store_n(&link_empty_path_state, 1, __ATOMIC_RELAXED);
      return 0;
    }
    int err = errno;
    if (state == 1 || (err != ENOENT && err != EPERM && err != EINVAL)) return err;
  }
  char src[64];
  snprintf(src, sizeof src, "/proc/self/fd/%d", fd);
  if (linkat(AT_FDCWD, src, dirfd, name, AT_SYMLINK_FOLLOW) == 0) {
    if (state == 0) __atomic_store_n(&link_empty_path_state, -1, __ATOMIC_RELAXED);
    return 0;
  }
  return errno;
}

#endif
