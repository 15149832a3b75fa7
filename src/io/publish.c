/* publish.c — atomic publication of a finished temporary file (publish.h).
 *
 * Exported: tf_publish_tmp_name, tf_publish.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tradeflow/error.h"
#include "tradeflow/publish.h"

int tf_publish_tmp_name(const char *path, char *buf, size_t len) {
  const int n = snprintf(buf, len, "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= len) return tf_error(TF_EINVAL, "path too long: %.64s...", path);
  return TF_OK;
}

int tf_publish(int fd, const char *tmp, const char *path) {
  if (fd < 0 && (fd = open(tmp, O_RDONLY | O_CLOEXEC)) < 0) {
    const int e = errno;
    unlink(tmp);
    return tf_error(TF_EIO, "%s: cannot open the finished temporary '%s': %s", path, tmp,
                    strerror(e));
  }
  if (fsync(fd) != 0) {
    const int e = errno;
    close(fd);
    unlink(tmp);
    return tf_error(TF_EIO, "%s: cannot write '%s' to disk: %s", path, tmp, strerror(e));
  }
  /* NFS may report a failed write only at close */
  if (close(fd) != 0 || rename(tmp, path) != 0) {
    const int e = errno;
    unlink(tmp);
    return tf_error(TF_EIO, "%s: cannot write '%s' and rename it over the target: %s", path,
                    tmp, strerror(e));
  }
  /* Without this the rename itself may not survive a crash. */
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else
    snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
  const int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return TF_OK;
  int st = TF_OK;
  if (fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP)
    st = tf_error(TF_EIO, "%s: written, but syncing directory '%s' failed: %s", path, dir,
                  strerror(errno));
  close(dfd);
  return st;
}
