/* error.c — thread-local error message behind tf_error()/tf_errmsg().
 * Exported: tf_error, tf_errmsg, tf_strstatus. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tradeflow/error.h"

static _Thread_local char msg_buf[1024];

int tf_error(int code, const char *fmt, ...) {
  if (code == TF_OK) {
    msg_buf[0] = '\0';
    return code;
  }
  /* formatted aside first: callers may pass tf_errmsg() itself as an argument, to prefix
   * context to a message from below */
  char tmp[sizeof msg_buf];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  memcpy(msg_buf, tmp, sizeof msg_buf);
  return code;
}

const char *tf_errmsg(void) { return msg_buf; }

const char *tf_strstatus(int code) {
  static const char *const names[] = {"TF_OK",     "TF_EINVAL", "TF_ENOMEM",
                                      "TF_EIO",    "TF_EFORMAT", "TF_ERANGE",
                                      "TF_ENUMERIC", "TF_EMPI",  "TF_EUNSUP"};
  if (code < 0 || code >= (int)(sizeof names / sizeof names[0])) return "TF_E?";
  return names[code];
}
