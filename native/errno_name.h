/*
 * The symbolic name of an errno value ("ENOSPC"), as Node names it in err.code, so a native
 * failure reads as the same error a JavaScript call would give. Shared by both addons.
 */
#ifndef VERITREE_ERRNO_NAME_H
#define VERITREE_ERRNO_NAME_H
#include <errno.h>
#include <string.h>

static inline const char *errno_name(int err) {
  switch (err) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(EBADF) E(EAGAIN) E(ENOMEM)
    E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL)
    E(ENFILE) E(EMFILE) E(ENOTTY) E(ETXTBSY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS) E(EMLINK)
    E(ERANGE) E(ENAMETOOLONG) E(ENOSYS) E(ENOTEMPTY) E(ELOOP) E(ENODATA) E(EOVERFLOW)
    E(EOPNOTSUPP) E(ECANCELED) E(EDQUOT) E(ESTALE) E(EMSGSIZE) E(EBADMSG) E(EUCLEAN)
#undef E
    default: break;
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *n = strerrorname_np(err);
  if (n) return n;
#endif
  return "EUNKNOWN";
}

#endif
