/* tradeflow — publishing a file atomically: the one way every output of tradeflow reaches
 * its final name (checkpoints, sample files, evaluation results, text outputs).
 *
 * The writer fills a temporary next to the target ("<path>.tmp.<pid>", same directory, so the
 * rename cannot cross a file system), then tf_publish makes it durable and visible in one
 * step: fsync of the temporary, close, rename over the target, fsync of the directory (so
 * that the rename itself survives a crash).  A reader, or a rerun that skips finished
 * outputs, never sees a half-written file, and a failure leaves the previous target intact.
 * Nothing here is collective.
 */
#ifndef TRADEFLOW_PUBLISH_H
#define TRADEFLOW_PUBLISH_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The temporary's name for `path` into buf (len bytes): "<path>.tmp.<pid>".  TF_EINVAL when
 * it does not fit. */
int tf_publish_tmp_name(const char *path, char *buf, size_t len);

/* Publish `tmp` as `path`.  fd: an open descriptor of tmp whose writes are done (it is synced
 * and closed here, whatever the outcome), or -1 to open tmp here.  TF_OK, or TF_EIO with a
 * message naming the path, the temporary and the cause; when the failure comes before the
 * rename, the temporary is removed and `path` is untouched.  A directory that cannot be synced
 * (EINVAL, ENOTSUP: some file systems) is not an error: the file is in place either way. */
int tf_publish(int fd, const char *tmp, const char *path);

#ifdef __cplusplus
}
#endif
#endif
