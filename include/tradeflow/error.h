/* tradeflow — error codes and messages.
 *
 * Library functions that can fail return an int status (TF_OK == 0 on success) and leave a
 * human-readable message naming the cause (file, line, key, value, shape...) in a thread-local
 * buffer, read with tf_errmsg().  The library never calls exit(): only the command-line front
 * end decides to stop the process.
 */
#ifndef TRADEFLOW_ERROR_H
#define TRADEFLOW_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum tf_status {
  TF_OK = 0,
  TF_EINVAL,   /* invalid argument: wrong shape, bad value, API misuse */
  TF_ENOMEM,   /* allocation failed */
  TF_EIO,      /* file could not be opened, read or written */
  TF_EFORMAT,  /* file or config exists but its content is malformed */
  TF_ERANGE,   /* value out of its allowed range */
  TF_ENUMERIC, /* NaN or Inf where a finite number is required */
  TF_EMPI,     /* an MPI call failed or another rank reported an error */
  TF_EUNSUP    /* requested feature not supported (e.g. derivative order too high) */
};

/* Record a message for `code` (printf-style) and return `code`, so that
 *   return tf_error(TF_EINVAL, "%s:%d: key '%s' ...", file, line, key);
 * both reports and propagates.  TF_OK clears the message.  tf_errmsg() may be an argument
 * (to add context to a message from a lower layer). */
int tf_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The message of the last tf_error() on this thread ("" if none).  Valid until the next call. */
const char *tf_errmsg(void);

/* Short name of a status code ("TF_EINVAL"...). */
const char *tf_strstatus(int code);

#ifdef __cplusplus
}
#endif
#endif
