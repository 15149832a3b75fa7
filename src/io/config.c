/* config.c — INI configuration files checked against a caller-owned schema.
 *
 * Exported: tf_config_load, tf_config_load_string, tf_config_load_status, tf_config_destroy,
 *           tf_config_int, tf_config_real, tf_config_bool, tf_config_str, tf_config_real_list,
 *           tf_config_is_set, tf_config_where, tf_config_text, tf_config_help,
 *           tf_config_max_line.  None is collective; none touches global state.
 *
 * libinih parses; it is fed through ini_parse_stream() and our own line reader, because
 *  - Debian's build passes no line number to the handler: the reader counts lines, and inih
 *    calls the handler for a line before it asks for the next one;
 *  - an indented line would otherwise continue the previous value (INI_ALLOW_MULTILINE is on),
 *    so `  steps = 10` under `lr = 1` would silently set lr to "steps = 10": the reader drops
 *    leading blanks, and continuation never triggers;
 *  - a line longer than inih's buffer would be split into two "lines", the second parsed on
 *    its own: the reader refuses it;
 *  - inih ignores anything after a section header's ']': the reader refuses it.
 * libinih's run-time settings (Debian exports them as globals) are left alone: other code may
 * use the library, and an upstream build has no such globals.
 *
 * Messages are built in a local buffer and handed to tf_error() once, at the end, because the
 * first problem by line may be a syntax error that inih reports only when it returns.
 */
/* realpath() is an XSI extension: _POSIX_C_SOURCE (set by the build) alone hides it in glibc. */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "tradeflow/config.h"
#include "tradeflow/error.h"

enum { MSG_MAX = 1024, SHOW_MAX = 72, NAME_MAX_LEN = 48, FILE_MAX_BYTES = 4 << 20 };
enum { SRC_NONE, SRC_DEFAULT, SRC_FILE, SRC_SET };

typedef struct {
  char *text; /* effective value as tf_config_text() writes it (paths resolved) */
  int src;
  int line; /* file line, or --set argument index counted from 1 */
  int64_t i;
  double r;
  int b;
  double *list;
  int n_list;
  char *where;
} cfg_val;

struct tf_config {
  const tf_cfg_key *schema;
  int n;
  cfg_val *v;
  char *origin;  /* the file as the user named it (messages, tf_config_where) */
  char *basedir; /* absolute directory of the file; NULL for strings */
};

static _Thread_local int load_status;

/* ---- small helpers ------------------------------------------------------------------------ */

#if defined(__GNUC__)
#define TF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TF_PRINTF(a, b)
#endif

/* Appends to a MSG_MAX buffer, truncating: a cut message is better than none. */
static void TF_PRINTF(2, 3) apf(char *m, const char *fmt, ...) {
  size_t n = strlen(m);
  if (n + 1 >= MSG_MAX) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m + n, MSG_MAX - n, fmt, ap);
  va_end(ap);
}

/* A value as quoted in messages: bounded, so the accepted set after it still fits. */
static const char *show(const char *v, char out[SHOW_MAX + 1]) {
  size_t n = strlen(v), k = 0;
  size_t lim = n > SHOW_MAX ? SHOW_MAX - 3 : n;
  for (; k < lim; k++) out[k] = (v[k] == '\n' || v[k] == '\r' || v[k] == '\t') ? ' ' : v[k];
  if (n > SHOW_MAX) memcpy(out + k, "...", 3), k += 3;
  out[k] = '\0';
  return out;
}

static int is_blank(int ch) { return ch == ' ' || ch == '\t' || ch == '\f' || ch == '\v' || ch == '\r'; }

/* Trimmed copy of s[0..n). */
static char *dup_trim(const char *s, size_t n) {
  while (n && isspace((unsigned char)*s)) s++, n--;
  while (n && isspace((unsigned char)s[n - 1])) n--;
  char *r = malloc(n + 1);
  if (r) {
    memcpy(r, s, n);
    r[n] = '\0';
  }
  return r;
}

typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void TF_PRINTF(2, 3) sb_printf(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
      b->oom = 1;
      return;
    }
    if (b->p && b->n + (size_t)k < b->cap) {
      b->n += (size_t)k;
      return;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap <= b->n + (size_t)k) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
}

static char *sb_finish(sbuf *b) {
  if (b->oom || !b->p) {
    free(b->p);
    return NULL;
  }
  return b->p;
}

/* Shortest text that reads back as x: messages show 1e-08 and 10, not 1.0000000000000001e-08
 * or 1e+01. */
static void fmt_num(double x, char out[40]) {
  if (isinf(x)) {
    snprintf(out, 40, x > 0 ? "inf" : "-inf");
    return;
  }
  if (x == floor(x) && fabs(x) < 1e15) {
    snprintf(out, 40, "%.0f", x);
    return;
  }
  for (int p = 1; p <= 17; p++) {
    snprintf(out, 40, "%.*g", p, x);
    if (strtod(out, NULL) == x) return;
  }
}

static int has_range(const tf_cfg_key *k) {
  return !(k->min > k->max) && (k->min > -INFINITY || k->max < INFINITY);
}

/* "in [1, 100000]", ">= 1", "<= 5"; "" if unbounded. */
static void range_text(const tf_cfg_key *k, char out[96]) {
  char a[40], b[40];
  out[0] = '\0';
  if (!has_range(k)) return;
  fmt_num(k->min, a);
  fmt_num(k->max, b);
  if (k->min > -INFINITY && k->max < INFINITY)
    snprintf(out, 96, "in [%s, %s]", a, b);
  else if (k->min > -INFINITY)
    snprintf(out, 96, ">= %s", a);
  else
    snprintf(out, 96, "<= %s", b);
}

static void append_choices(char *m, const char *choices) {
  for (const char *p = choices; *p;) {
    size_t n = strcspn(p, "|");
    apf(m, "%s%.*s", p == choices ? "" : ", ", (int)n, p);
    p += n + (p[n] == '|');
  }
}

/* What a key accepts, for "expected ..." in messages and for tf_config_help(). */
static void expect_text(const tf_cfg_key *k, char *m) {
  char rng[96];
  range_text(k, rng);
  switch (k->type) {
  case TF_CFG_INT: apf(m, "an integer%s%s", *rng ? " " : "", rng); break;
  case TF_CFG_REAL: apf(m, "a finite real number%s%s", *rng ? " " : "", rng); break;
  case TF_CFG_BOOL: apf(m, "true/false, yes/no, on/off or 1/0"); break;
  case TF_CFG_STRING: apf(m, "text"); break;
  case TF_CFG_CHOICE:
    apf(m, "one of: ");
    append_choices(m, k->choices);
    break;
  case TF_CFG_PATH_IN: apf(m, "an existing, readable file or directory"); break;
  case TF_CFG_PATH_OUT: apf(m, "a path in an existing, writable directory"); break;
  case TF_CFG_REAL_LIST:
    apf(m, "comma-separated finite reals%s%s", *rng ? ", each " : "", rng);
    break;
  }
}

/* Optimal-string-alignment distance, ignoring letter case: "LR" and "lr" are 0 apart, "stpes"
 * and "steps" 1. */
static int edit_distance(const char *a, const char *b) {
  enum { L = 64 };
  size_t na = strlen(a), nb = strlen(b);
  if (na >= L || nb >= L) return 1000;
  int d[L][L];
  for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= na; i++)
    for (size_t j = 1; j <= nb; j++) {
      int ai = tolower((unsigned char)a[i - 1]), bj = tolower((unsigned char)b[j - 1]);
      int best = d[i - 1][j - 1] + (ai != bj);
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && ai == tolower((unsigned char)b[j - 2]) &&
          tolower((unsigned char)a[i - 2]) == bj && d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  return d[na][nb];
}

/* Close enough to suggest: a single slip in a short name, two in a longer one. */
static int close_enough(const char *typed, int d) {
  size_t n = strlen(typed);
  return d == 0 || (d == 1 && n >= 2) || (d == 2 && n >= 5);
}

static int find_key(const tf_cfg_key *s, int n, const char *section, const char *key) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s[i].section, section) && !strcmp(s[i].key, key)) return i;
  return -1;
}

static int section_known(const tf_cfg_key *s, int n, const char *section) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s[i].section, section)) return 1;
  return 0;
}

/* First index of each distinct section, in schema order. */
static int first_of_section(const tf_cfg_key *s, int i) {
  for (int j = 0; j < i; j++)
    if (!strcmp(s[j].section, s[i].section)) return 0;
  return 1;
}

static void list_sections(char *m, const tf_cfg_key *s, int n) {
  int first = 1;
  for (int i = 0; i < n; i++)
    if (first_of_section(s, i)) {
      apf(m, "%s[%s]", first ? "" : ", ", s[i].section);
      first = 0;
    }
}

static void list_keys(char *m, const tf_cfg_key *s, int n, const char *section) {
  int first = 1;
  for (int i = 0; i < n; i++)
    if (!strcmp(s[i].section, section)) {
      apf(m, "%s%s", first ? "" : ", ", s[i].key);
      first = 0;
    }
}

/* "LOC: unknown section/key ..." with the known names and, when one is close, a suggestion.
 * key NULL: about a section header. */
static void msg_unknown(char *m, const char *loc, const tf_cfg_key *s, int n, const char *section,
                        const char *key) {
  if (!*section && key) {
    apf(m, "%s: key '%s' comes before any [section] header", loc, key);
    for (int i = 0; i < n; i++)
      if (!strcmp(s[i].key, key)) {
        apf(m, " ('%s' belongs in section [%s])", key, s[i].section);
        break;
      }
    apf(m, "; known sections: ");
    list_sections(m, s, n);
    return;
  }
  if (!key || !section_known(s, n, section)) {
    const char *best = NULL;
    int bd = 1000;
    for (int i = 0; i < n; i++) {
      int d = edit_distance(section, s[i].section);
      if (d < bd) bd = d, best = s[i].section;
    }
    apf(m, "%s: unknown section [%s]", loc, section);
    if (best && close_enough(section, bd)) apf(m, " (did you mean [%s]?)", best);
    apf(m, "; known sections: ");
    list_sections(m, s, n);
    return;
  }
  if (!*key) {
    apf(m, "%s: no key name before '=' in section [%s]; keys in [%s]: ", loc, section, section);
    list_keys(m, s, n, section);
    return;
  }
  apf(m, "%s: unknown key '%s' in section [%s]", loc, key, section);
  const char *elsewhere = NULL, *best = NULL;
  int bd = 1000;
  for (int i = 0; i < n; i++) {
    if (strcmp(s[i].section, section)) {
      if (!elsewhere && !strcmp(s[i].key, key)) elsewhere = s[i].section;
      continue;
    }
    int d = edit_distance(key, s[i].key);
    if (d < bd) bd = d, best = s[i].key;
  }
  if (elsewhere)
    apf(m, " ('%s' belongs in section [%s])", key, elsewhere);
  else if (best && close_enough(key, bd))
    apf(m, " (did you mean '%s'?)", best);
  apf(m, "; keys in [%s]: ", section);
  list_keys(m, s, n, section);
}

/* ---- values ------------------------------------------------------------------------------- */

/* An empty value means "not given" for an optional path or list (default ""); a string may be
 * empty; a number, boolean or choice never is. */
static int empty_ok(const tf_cfg_key *k) {
  if (k->type == TF_CFG_STRING) return 1;
  if (k->type == TF_CFG_PATH_IN || k->type == TF_CFG_PATH_OUT || k->type == TF_CFG_REAL_LIST)
    return k->def && !*k->def;
  return 0;
}

static int parse_real(const tf_cfg_key *k, const char *t, double *v, char *why,
                      const char *elem /* "element 2 '0.x' " or "" */) {
  char rng[96];
  range_text(k, rng);
  char *end;
  errno = 0;
  double x = *t ? strtod(t, &end) : 0.0;
  if (!*t || *end || isspace((unsigned char)*t)) {
    apf(why, "%snot a real number; expected ", elem);
    expect_text(k, why);
    return TF_EFORMAT;
  }
  if (!isfinite(x)) {
    apf(why, "%snot finite; expected ", elem);
    expect_text(k, why);
    return TF_ENUMERIC;
  }
  if (has_range(k) && (x < k->min || x > k->max)) {
    apf(why, "%sout of range: must be %s", elem, rng);
    return TF_ERANGE;
  }
  *v = x;
  return TF_OK;
}

static int parse_bool(const char *t, int *b) {
  static const char *const names[] = {"true", "yes", "on", "1", "false", "no", "off", "0"};
  for (int i = 0; i < 8; i++)
    if (!strcasecmp(t, names[i])) {
      *b = i < 4;
      return 1;
    }
  return 0;
}

static int is_int_syntax(const char *t) {
  if (*t == '+' || *t == '-') t++;
  if (!isdigit((unsigned char)*t)) return 0;
  while (isdigit((unsigned char)*t)) t++;
  return *t == '\0';
}

/* Fills the typed fields of *out from t (t itself is not stored).  On failure: a status, and
 * the reason followed by what is accepted appended to why.  Paths are only checked for
 * emptiness here: their file-system checks wait for the value finally in effect. */
static int parse_value(const tf_cfg_key *k, const char *t, cfg_val *out, char *why) {
  char rng[96], sh[SHOW_MAX + 1];
  range_text(k, rng);
  if (!*t && !empty_ok(k)) {
    apf(why, "empty value; expected ");
    expect_text(k, why);
    return TF_EFORMAT;
  }
  switch (k->type) {
  case TF_CFG_INT: {
    if (!is_int_syntax(t)) {
      char *end, num[40];
      double x = strtod(t, &end);
      apf(why, "not an integer; expected ");
      expect_text(k, why);
      /* "1e5 steps" is a natural thing to write */
      if (!*end && x == floor(x) && fabs(x) < 1e15) {
        fmt_num(x, num);
        apf(why, " (write it as %s)", num);
      }
      return TF_EFORMAT;
    }
    errno = 0;
    long long v = strtoll(t, NULL, 10);
    if (errno == ERANGE) {
      apf(why, "does not fit a 64-bit integer; expected ");
      expect_text(k, why);
      return TF_ERANGE;
    }
    if (has_range(k) && ((double)v < k->min || (double)v > k->max)) {
      apf(why, "out of range: must be %s", rng);
      return TF_ERANGE;
    }
    out->i = v;
    return TF_OK;
  }
  case TF_CFG_REAL: return parse_real(k, t, &out->r, why, "");
  case TF_CFG_BOOL:
    if (!parse_bool(t, &out->b)) {
      apf(why, "not a boolean; expected ");
      expect_text(k, why);
      return TF_EFORMAT;
    }
    return TF_OK;
  case TF_CFG_CHOICE: {
    char best[NAME_MAX_LEN + 16] = "";
    int bd = 1000;
    for (const char *p = k->choices; *p;) {
      size_t n = strcspn(p, "|");
      if (strlen(t) == n && !strncmp(t, p, n)) return TF_OK;
      char alt[NAME_MAX_LEN + 16];
      snprintf(alt, sizeof alt, "%.*s", (int)n, p);
      int d = edit_distance(t, alt);
      if (d < bd) bd = d, memcpy(best, alt, sizeof alt);
      p += n + (p[n] == '|');
    }
    apf(why, "not an accepted choice");
    if (*best && close_enough(t, bd)) apf(why, " (did you mean '%s'?)", best);
    apf(why, "; expected ");
    expect_text(k, why);
    return TF_ERANGE;
  }
  case TF_CFG_REAL_LIST: {
    out->list = NULL;
    out->n_list = 0;
    if (!*t) return TF_OK;
    int cnt = 1;
    for (const char *p = t; *p; p++) cnt += *p == ',';
    double *vals = malloc((size_t)cnt * sizeof *vals);
    if (!vals) {
      apf(why, "out of memory");
      return TF_ENOMEM;
    }
    const char *p = t;
    for (int e = 0; e < cnt; e++) {
      size_t n = strcspn(p, ",");
      char *el = dup_trim(p, n);
      if (!el) {
        free(vals);
        apf(why, "out of memory");
        return TF_ENOMEM;
      }
      char pre[SHOW_MAX + 40];
      snprintf(pre, sizeof pre, "element %d '%s' is ", e + 1, show(el, sh));
      int st = parse_real(k, el, &vals[e], why, pre);
      free(el);
      if (st) {
        free(vals);
        return st;
      }
      p += n + 1;
    }
    out->list = vals;
    out->n_list = cnt;
    return TF_OK;
  }
  case TF_CFG_STRING:
  case TF_CFG_PATH_IN:
  case TF_CFG_PATH_OUT: return TF_OK;
  }
  return TF_OK;
}

/* The value's text in one form per value, so that equal values compare equal as strings
 * (a restart compares recorded and current settings with tf_config_str()). */
static char *canonical(const tf_cfg_key *k, const char *text, const cfg_val *p) {
  char num[40];
  switch (k->type) {
  case TF_CFG_INT: snprintf(num, sizeof num, "%lld", (long long)p->i); return strdup(num);
  case TF_CFG_REAL: fmt_num(p->r, num); return strdup(num);
  case TF_CFG_BOOL: return strdup(p->b ? "true" : "false");
  case TF_CFG_REAL_LIST: {
    sbuf b = {0};
    sb_printf(&b, "%s", "");
    for (int i = 0; i < p->n_list; i++) {
      fmt_num(p->list[i], num);
      sb_printf(&b, "%s%s", i ? ", " : "", num);
    }
    return sb_finish(&b);
  }
  case TF_CFG_STRING:
  case TF_CFG_CHOICE:
  case TF_CFG_PATH_IN:
  case TF_CFG_PATH_OUT: break;
  }
  return strdup(text);
}

/* Takes the parsed list over. */
static int store(const tf_cfg_key *k, cfg_val *v, const char *text, cfg_val *parsed, int src,
                 int line) {
  char *t = canonical(k, text, parsed);
  if (!t) {
    free(parsed->list);
    return TF_ENOMEM;
  }
  free(v->text);
  free(v->list);
  v->text = t;
  v->src = src;
  v->line = line;
  v->i = parsed->i;
  v->r = parsed->r;
  v->b = parsed->b;
  v->list = parsed->list;
  v->n_list = parsed->n_list;
  return TF_OK;
}

/* ---- libinih ------------------------------------------------------------------------------ */

static char *probe_reader(char *str, int num, void *stream) {
  (void)str;
  *(int *)stream = num;
  return NULL;
}

static int probe_handler(void *user, const char *section, const char *name, const char *value) {
  (void)user, (void)section, (void)name, (void)value;
  return 1;
}

/* The reader hands inih a line with its '\n', as fgets would: a build with INI_ALLOW_REALLOC
 * takes a full buffer without '\n' for a partial line and reads on.  Hence two bytes
 * ('\n', '\0') less than inih's buffer. */
int tf_config_max_line(void) {
  int num = 0;
  ini_parse_stream(probe_reader, &num, probe_handler, NULL);
  return num - 2;
}

typedef struct {
  tf_config *cfg;
  const char *buf; /* the whole text; lines are found again for syntax messages */
  size_t len, pos;
  int line, stop;
  int err, err_line;
  char msg[MSG_MAX];
  int *seen; /* per schema key: the file line that gave it, 0 if none yet */
} load_ctx;

/* Only the first problem is kept; problems arrive in line order (see on_pair). */
static int start_fail(load_ctx *c, int line, int code) {
  if (c->err) return 0;
  c->err = code;
  c->err_line = line;
  c->msg[0] = '\0';
  return 1;
}

static char *read_line(char *str, int num, void *stream) {
  load_ctx *c = stream;
  if (c->stop || c->err || c->pos >= c->len) return NULL;
  const char *s = c->buf + c->pos;
  size_t rest = c->len - c->pos;
  const char *nl = memchr(s, '\n', rest);
  size_t n = nl ? (size_t)(nl - s) : rest;
  c->pos += n + (nl != NULL);
  c->line++;
  const char *origin = c->cfg->origin;
  if (c->line == 1 && n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) s += 3, n -= 3;
  if (n && s[n - 1] == '\r') n--;
  if (memchr(s, '\0', n)) {
    if (start_fail(c, c->line, TF_EFORMAT))
      apf(c->msg, "%s:%d: line contains a NUL byte; a config file is plain text", origin, c->line);
    c->stop = 1;
    return NULL;
  }
  if ((long)n > (long)num - 2) {
    char sh[SHOW_MAX + 1], *t = dup_trim(s, n < SHOW_MAX ? n : SHOW_MAX);
    if (start_fail(c, c->line, TF_EFORMAT))
      apf(c->msg,
          "%s:%d: line '%s' is %zu characters long; at most %d are accepted (libinih's line "
          "buffer): write the path relative to the config file or give the value with --set",
          origin, c->line, t ? show(t, sh) : "", n, num - 2);
    free(t);
    c->stop = 1;
    return NULL;
  }
  while (n && is_blank(*s)) s++, n--;
  if (n && *s == '[') {
    const char *close = memchr(s, ']', n), *e = s + n;
    /* here rather than in on_pair: the header's own line, and an empty section is caught too */
    if (close) {
      char *name = dup_trim(s + 1, (size_t)(close - s - 1));
      int known = name && section_known(c->cfg->schema, c->cfg->n, name);
      if (!known && start_fail(c, c->line, name ? TF_EFORMAT : TF_ENOMEM)) {
        char loc[MSG_MAX / 2];
        snprintf(loc, sizeof loc, "%s:%d", origin, c->line);
        if (name)
          msg_unknown(c->msg, loc, c->cfg->schema, c->cfg->n, name, NULL);
        else
          apf(c->msg, "config: out of memory");
      }
      free(name);
      if (!known) {
        c->stop = 1;
        return NULL;
      }
    }
    const char *q = close ? close + 1 : e;
    while (q < e && is_blank(*q)) q++;
    if (q < e && *q != ';' && *q != '#') {
      char sh[SHOW_MAX + 1], *t = dup_trim(q, (size_t)(e - q));
      if (start_fail(c, c->line, TF_EFORMAT))
        apf(c->msg,
            "%s:%d: unexpected '%s' after section header '%.*s'; expected only a comment after "
            "']'",
            origin, c->line, t ? show(t, sh) : "", (int)(close - s + 1), s);
      free(t);
      c->stop = 1;
      return NULL;
    }
  }
  memcpy(str, s, n);
  str[n] = '\n';
  str[n + 1] = '\0';
  return str;
}

/* inih calls this for a line before it reads the next, so c->line is the pair's line. */
static int on_pair(void *user, const char *section, const char *name, const char *value) {
  load_ctx *c = user;
  tf_config *cfg = c->cfg;
  char loc[MSG_MAX / 2], sh[SHOW_MAX + 1], sh2[SHOW_MAX + 1];
  if (c->err) return 0;
  snprintf(loc, sizeof loc, "%s:%d", cfg->origin, c->line);
  /* inih keeps the blanks inside "[ train ]" */
  char *sec = dup_trim(section, strlen(section));
  if (!sec) {
    if (start_fail(c, c->line, TF_ENOMEM)) apf(c->msg, "config: out of memory");
    return 0;
  }
  int idx = find_key(cfg->schema, cfg->n, sec, name);
  if (idx < 0) {
    if (start_fail(c, c->line, TF_EFORMAT)) msg_unknown(c->msg, loc, cfg->schema, cfg->n, sec, name);
    free(sec);
    return 0;
  }
  free(sec);
  const tf_cfg_key *k = &cfg->schema[idx];
  if (c->seen[idx]) {
    if (start_fail(c, c->line, TF_EFORMAT))
      apf(c->msg,
          "%s: duplicate key %s.%s = '%s' (first given at line %d as '%s'); a key may appear "
          "only once per file",
          loc, k->section, k->key, show(value, sh), c->seen[idx], show(cfg->v[idx].text, sh2));
    return 0;
  }
  cfg_val tmp = {0};
  char why[MSG_MAX] = "";
  int st = parse_value(k, value, &tmp, why);
  if (!st) st = store(k, &cfg->v[idx], value, &tmp, SRC_FILE, c->line);
  if (st) {
    if (start_fail(c, c->line, st))
      apf(c->msg, "%s: %s.%s = '%s': %s", loc, k->section, k->key, show(value, sh),
          st == TF_ENOMEM ? "out of memory" : why);
    return 0;
  }
  c->seen[idx] = c->line;
  return 1;
}

/* inih reports a line it could not parse only by number: find it again to quote it. */
static void msg_syntax(char *m, const char *origin, const char *buf, size_t len, int line) {
  const char *s = buf, *end = buf + len;
  for (int l = 1; l < line && s < end; l++) {
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    s = nl ? nl + 1 : end;
  }
  const char *nl = memchr(s, '\n', (size_t)(end - s));
  size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
  if (line == 1 && n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) s += 3, n -= 3;
  int indented = n && is_blank(*s);
  char sh[SHOW_MAX + 1], *t = dup_trim(s, n);
  if (!t) {
    apf(m, "%s:%d: syntax error", origin, line);
    return;
  }
  if (t[0] == '[')
    apf(m, "%s:%d: section header '%s' has no closing ']'; expected [section]", origin, line,
        show(t, sh));
  else
    apf(m, "%s:%d: '%s' is not `key = value`, a [section] header or a comment", origin, line,
        show(t, sh));
  if (indented && t[0] != '[')
    apf(m, " (an indented line does not continue the previous value: write a value on one "
           "line)");
  free(t);
}

typedef struct {
  const char *want;
  int same;
} rt_capture;

static int rt_handler(void *user, const char *section, const char *name, const char *value) {
  (void)section, (void)name;
  rt_capture *r = user;
  r->same = !strcmp(value, r->want);
  return 1;
}

/* tf_config_text() writes every value back on one line and must load again, so a value a
 * config line cannot hold (from --set, or a resolved path) is refused before any work. */
static int check_line(const tf_cfg_key *k, const char *value, int maxline, char *why) {
  if (strpbrk(value, "\n\r")) {
    apf(why, "contains a line break, which a config line cannot hold");
    return TF_EFORMAT;
  }
  size_t n = strlen(k->key) + 1 + strlen(value);
  if ((long)n > maxline) {
    apf(why,
        "is too long to be recorded as a config line ('%s=' and %zu characters; at most %d "
        "characters per line): use a shorter path, e.g. through a symbolic link",
        k->key, strlen(value), maxline);
    return TF_EFORMAT;
  }
  char *line = malloc(n + 2);
  if (!line) {
    apf(why, "out of memory");
    return TF_ENOMEM;
  }
  snprintf(line, n + 2, "%s=%s\n", k->key, value);
  rt_capture r = {value, 0};
  int rc = ini_parse_string(line, rt_handler, &r);
  free(line);
  if (rc != 0 || !r.same) {
    apf(why, "would read back differently from a config file (a ';' after a blank starts a "
             "comment there)");
    return TF_EFORMAT;
  }
  return TF_OK;
}

/* ---- paths -------------------------------------------------------------------------------- */

static char *cwd_dup(void) {
  for (size_t cap = 256; cap <= (1u << 20); cap *= 2) {
    char *b = malloc(cap);
    if (!b) return NULL;
    if (getcwd(b, cap)) return b;
    free(b);
    if (errno != ERANGE) return NULL;
  }
  return NULL;
}

static char *join_dir(const char *dir, const char *rel) {
  size_t a = strlen(dir), b = strlen(rel);
  char *r = malloc(a + b + 2);
  if (!r) return NULL;
  int slash = a > 0 && dir[a - 1] == '/';
  snprintf(r, a + b + 2, "%s%s%s", dir, slash ? "" : "/", rel);
  return r;
}

/* Absolute form of v->text: from the file's directory for a PATH_IN given in the file, else
 * from the current directory.  *base: the directory used for a relative path (NULL for an
 * absolute one), for messages; caller frees both.  NULL if out of memory. */
static char *absolute(const tf_config *cfg, const tf_cfg_key *k, const cfg_val *v, char **base) {
  *base = NULL;
  if (v->text[0] == '/') return strdup(v->text);
  if (k->type == TF_CFG_PATH_IN && v->src == SRC_FILE && cfg->basedir)
    *base = strdup(cfg->basedir);
  else
    *base = cwd_dup();
  return *base ? join_dir(*base, v->text) : NULL;
}

static int resolve_in(const tf_config *cfg, const tf_cfg_key *k, cfg_val *v, char *m) {
  char sh[SHOW_MAX + 1], *base, *full = absolute(cfg, k, v, &base);
  if (!full) {
    free(base);
    apf(m, "config: out of memory");
    return TF_ENOMEM;
  }
  errno = 0;
  char *rp = realpath(full, NULL);
  int e = errno;
  if (rp && access(rp, R_OK) != 0) {
    e = errno;
    free(rp);
    rp = NULL;
  }
  if (!rp) {
    apf(m, "%s: %s.%s = '%s': cannot read %s (%s); expected ", v->where, k->section, k->key,
        show(v->text, sh), full, strerror(e));
    expect_text(k, m);
    if (base && v->src == SRC_FILE)
      apf(m, " (a relative path in a config file is taken from the file's directory, %s)", base);
    else if (base)
      apf(m, " (relative to the current directory, %s)", base);
    if (v->text[0] == '~' || strchr(v->text, '$')) apf(m, " (~ and $VARIABLES are not expanded)");
    free(full);
    free(base);
    return TF_EIO;
  }
  free(full);
  free(base);
  free(v->text);
  v->text = rp;
  return TF_OK;
}

static int resolve_out(const tf_config *cfg, const tf_cfg_key *k, cfg_val *v, char *m) {
  char sh[SHOW_MAX + 1], *base, *full = absolute(cfg, k, v, &base);
  free(base);
  if (!full) {
    apf(m, "config: out of memory");
    return TF_ENOMEM;
  }
  size_t n = strlen(full);
  while (n > 1 && full[n - 1] == '/') full[--n] = '\0';
  char *slash = strrchr(full, '/');
  const char *name = slash + 1;
  /* "out/.", "..": the output is that directory itself, so it must exist. */
  int self = !*name || !strcmp(name, ".") || !strcmp(name, "..");
  char *dir = self ? strdup(full) : strndup(full, slash == full ? 1 : (size_t)(slash - full));
  if (!dir) {
    free(full);
    apf(m, "config: out of memory");
    return TF_ENOMEM;
  }
  errno = 0;
  char *rd = realpath(dir, NULL);
  int e = errno, st = TF_OK;
  struct stat sb;
  if (!rd) {
    apf(m, "%s: %s.%s = '%s': directory %s %s (%s)", v->where, k->section, k->key,
        show(v->text, sh), dir, e == ENOENT ? "does not exist" : "cannot be used", strerror(e));
    st = TF_EIO;
  } else if (stat(rd, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    apf(m, "%s: %s.%s = '%s': %s is not a directory", v->where, k->section, k->key,
        show(v->text, sh), rd);
    st = TF_EIO;
  } else if (access(rd, W_OK | X_OK) != 0) {
    e = errno;
    apf(m, "%s: %s.%s = '%s': directory %s is not writable (%s)", v->where, k->section, k->key,
        show(v->text, sh), rd, strerror(e));
    st = TF_EIO;
  }
  if (st) {
    apf(m, "; expected ");
    expect_text(k, m);
    if (v->text[0] != '/') apf(m, " (relative output paths are taken from the current directory)");
    free(rd);
    free(dir);
    free(full);
    return st;
  }
  char *res = self ? rd : join_dir(rd, name);
  if (!self) free(rd);
  free(dir);
  free(full);
  if (!res) {
    apf(m, "config: out of memory");
    return TF_ENOMEM;
  }
  free(v->text);
  v->text = res;
  return TF_OK;
}

/* ---- loading ------------------------------------------------------------------------------ */

static int check_name(const char *s) {
  if (!s || !*s || strlen(s) >= NAME_MAX_LEN) return 0;
  for (; *s; s++)
    if (!isgraph((unsigned char)*s) || strchr(".=:;#[]", *s)) return 0;
  return 1;
}

/* Schema mistakes are the caller's bugs; they are reported like user errors (NULL and a
 * message) so a test that loads the schema catches them without crashing. */
static int check_schema(const tf_cfg_key *s, int n, char *m) {
  for (int i = 0; i < n; i++) {
    const tf_cfg_key *k = &s[i];
    if (!check_name(k->section) || !check_name(k->key)) {
      apf(m,
          "config schema: entry %d: section and key must be names of 1 to %d characters without "
          "blanks, '.', '=', ':', ';', '#', '[' or ']'",
          i, NAME_MAX_LEN - 1);
      return TF_EINVAL;
    }
    if ((int)k->type < TF_CFG_INT || (int)k->type > TF_CFG_REAL_LIST) {
      apf(m, "config schema: %s.%s: unknown type %d", k->section, k->key, (int)k->type);
      return TF_EINVAL;
    }
    if (isnan(k->min) || isnan(k->max)) {
      apf(m, "config schema: %s.%s: range bound is NaN", k->section, k->key);
      return TF_EINVAL;
    }
    if (k->type == TF_CFG_CHOICE &&
        (!k->choices || !*k->choices || k->choices[0] == '|' ||
         k->choices[strlen(k->choices) - 1] == '|' || strstr(k->choices, "||"))) {
      apf(m, "config schema: %s.%s: CHOICE needs alternatives like \"adam|adamw\"", k->section,
          k->key);
      return TF_EINVAL;
    }
    if (k->help && strpbrk(k->help, "\n\r")) {
      apf(m, "config schema: %s.%s: help must be one line", k->section, k->key);
      return TF_EINVAL;
    }
    if (find_key(s, i, k->section, k->key) >= 0) {
      apf(m, "config schema: %s.%s appears twice", k->section, k->key);
      return TF_EINVAL;
    }
    if (k->def) {
      cfg_val tmp = {0};
      char why[MSG_MAX] = "", sh[SHOW_MAX + 1];
      int st = parse_value(k, k->def, &tmp, why);
      free(tmp.list);
      if (st) {
        apf(m, "config schema: default '%s' of %s.%s is invalid: %s", show(k->def, sh),
            k->section, k->key, why);
        return st == TF_ENOMEM ? st : TF_EINVAL;
      }
    }
  }
  return TF_OK;
}

static int apply_set(tf_config *cfg, int i, const char *a, char *m) {
  char loc[48], sh[SHOW_MAX + 1];
  snprintf(loc, sizeof loc, "--set argument %d", i + 1);
  if (!a) {
    apf(m, "%s: NULL argument; expected section.key=value", loc);
    return TF_EINVAL;
  }
  const char *eq = strchr(a, '=');
  char *name = eq ? dup_trim(a, (size_t)(eq - a)) : NULL;
  char *dot = name ? strchr(name, '.') : NULL;
  if (!eq || !name || !dot || dot == name || !dot[1]) {
    if (eq && !name) {
      apf(m, "config: out of memory");
      return TF_ENOMEM;
    }
    apf(m, "%s: expected section.key=value, got '%s'", loc, show(a, sh));
    if (name && !dot && *name) {
      for (int j = 0; j < cfg->n; j++)
        if (!strcmp(cfg->schema[j].key, name)) {
          apf(m, " (did you mean %s.%s=...?)", cfg->schema[j].section, name);
          break;
        }
    }
    free(name);
    return TF_EINVAL;
  }
  *dot = '\0';
  char *section = name, *key = dot + 1;
  while (*key && is_blank(*key)) key++;
  for (size_t n = strlen(section); n && is_blank(section[n - 1]);) section[--n] = '\0';
  char *value = dup_trim(eq + 1, strlen(eq + 1));
  if (!value) {
    free(name);
    apf(m, "config: out of memory");
    return TF_ENOMEM;
  }
  int st = TF_OK, idx = find_key(cfg->schema, cfg->n, section, key);
  if (idx < 0) {
    msg_unknown(m, loc, cfg->schema, cfg->n, section, key);
    st = TF_EFORMAT;
  } else {
    const tf_cfg_key *k = &cfg->schema[idx];
    cfg_val tmp = {0};
    char why[MSG_MAX] = "";
    st = parse_value(k, value, &tmp, why);
    if (!st) st = store(k, &cfg->v[idx], value, &tmp, SRC_SET, i + 1);
    if (st)
      apf(m, "%s: %s.%s = '%s': %s", loc, k->section, k->key, show(value, sh),
          st == TF_ENOMEM ? "out of memory" : why);
  }
  free(value);
  free(name);
  return st;
}

/* Required keys nobody gave: the first in full, the others named, so one run lists them all. */
static int fill_defaults(tf_config *cfg, char *m) {
  int missing = 0;
  for (int i = 0; i < cfg->n; i++) {
    const tf_cfg_key *k = &cfg->schema[i];
    cfg_val *v = &cfg->v[i];
    if (v->src != SRC_NONE) continue;
    if (!k->def) {
      if (!missing++)
        apf(m,
            "%s: missing required key %s.%s (%s); add `%s = ...` under [%s] or pass --set "
            "%s.%s=...",
            cfg->origin, k->section, k->key, k->help ? k->help : "no help", k->key, k->section,
            k->section, k->key);
      else
        apf(m, "%s %s.%s", missing == 2 ? "; also missing:" : ",", k->section, k->key);
      continue;
    }
    if (missing) continue;
    cfg_val tmp = {0};
    char why[MSG_MAX] = "";
    int st = parse_value(k, k->def, &tmp, why); /* cannot fail: check_schema parsed it */
    if (!st) st = store(k, v, k->def, &tmp, SRC_DEFAULT, 0);
    if (st) {
      apf(m, "config: out of memory");
      return TF_ENOMEM;
    }
  }
  return missing ? TF_EFORMAT : TF_OK;
}

static int set_where(tf_config *cfg) {
  for (int i = 0; i < cfg->n; i++) {
    cfg_val *v = &cfg->v[i];
    char w[MSG_MAX / 2];
    if (v->src == SRC_FILE)
      snprintf(w, sizeof w, "%s:%d", cfg->origin, v->line);
    else if (v->src == SRC_SET)
      snprintf(w, sizeof w, "--set argument %d", v->line);
    else
      snprintf(w, sizeof w, "default");
    if (!(v->where = strdup(w))) return TF_ENOMEM;
  }
  return TF_OK;
}

static tf_config *load(const char *text, size_t len, const char *origin, const char *basedir,
                       const tf_cfg_key *schema, int n, int n_set, const char *const *set) {
  char m[MSG_MAX] = "";
  int st = TF_OK;
  tf_config *cfg = NULL;
  load_ctx c;
  memset(&c, 0, sizeof c);
  if (n < 0 || (n > 0 && !schema) || n_set < 0 || (n_set > 0 && !set)) {
    apf(m, "config: invalid arguments (n_schema %d, n_set %d, schema or set NULL)", n, n_set);
    st = TF_EINVAL;
    goto fail;
  }
  if ((st = check_schema(schema, n, m))) goto fail;
  st = TF_ENOMEM;
  if (!(cfg = calloc(1, sizeof *cfg))) goto oom;
  cfg->schema = schema;
  cfg->n = n;
  if (!(cfg->v = calloc((size_t)n + 1, sizeof *cfg->v))) goto oom;
  if (!(cfg->origin = strdup(origin))) goto oom;
  if (basedir && !(cfg->basedir = strdup(basedir))) goto oom;
  if (!(c.seen = calloc((size_t)n + 1, sizeof *c.seen))) goto oom;
  st = TF_OK;

  if (text) {
    c.cfg = cfg;
    c.buf = text;
    c.len = len;
    int r = ini_parse_stream(read_line, &c, on_pair, &c);
    if (r > 0 && (!c.err || r < c.err_line)) {
      c.err = TF_EFORMAT;
      c.msg[0] = '\0';
      msg_syntax(c.msg, cfg->origin, text, len, r);
    } else if (r < 0 && !c.err) {
      c.err = TF_ENOMEM;
      apf(c.msg, "config: libinih failed (%d)", r);
    }
    if (c.err) {
      st = c.err;
      memcpy(m, c.msg, MSG_MAX);
      goto fail;
    }
  }
  for (int i = 0; i < n_set; i++)
    if ((st = apply_set(cfg, i, set[i], m))) goto fail;
  if ((st = fill_defaults(cfg, m))) goto fail;
  if ((st = set_where(cfg))) goto oom;
  for (int i = 0; i < n; i++) {
    const tf_cfg_key *k = &schema[i];
    cfg_val *v = &cfg->v[i];
    if (!*v->text) continue;
    if (k->type == TF_CFG_PATH_IN && (st = resolve_in(cfg, k, v, m))) goto fail;
    if (k->type == TF_CFG_PATH_OUT && (st = resolve_out(cfg, k, v, m))) goto fail;
  }
  int maxline = tf_config_max_line();
  for (int i = 0; i < n; i++) {
    char why[MSG_MAX] = "", sh[SHOW_MAX + 1];
    const cfg_val *v = &cfg->v[i];
    if ((st = check_line(&schema[i], v->text, maxline, why))) {
      apf(m, "%s: %s.%s = '%s': %s", v->where, schema[i].section, schema[i].key,
          show(v->text, sh), why);
      goto fail;
    }
  }
  free(c.seen);
  load_status = TF_OK;
  return cfg;

oom:
  m[0] = '\0';
  apf(m, "config: out of memory");
  st = TF_ENOMEM;
fail:
  free(c.seen);
  tf_config_destroy(cfg);
  load_status = st;
  tf_error(st, "%s", m);
  return NULL;
}

static int read_file(const char *path, char **out, size_t *len, char *m) {
  *out = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    apf(m, "cannot open config file '%s': %s", path, strerror(errno));
    return TF_EIO;
  }
  struct stat sb;
  if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
    apf(m, "config file '%s' is a directory", path);
    fclose(f);
    return TF_EIO;
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  int st = TF_OK, oom = !buf;
  while (!oom) {
    if (n + 1 >= cap) {
      if (cap > FILE_MAX_BYTES) break;
      char *q = realloc(buf, cap * 2);
      if (!q) {
        oom = 1;
        break;
      }
      buf = q;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - 1 - n, f);
    n += got;
    if (got == 0) break;
  }
  if (oom) {
    apf(m, "config: out of memory");
    st = TF_ENOMEM;
  } else if (ferror(f)) {
    apf(m, "cannot read config file '%s': %s", path, strerror(errno));
    st = TF_EIO;
  } else if (!feof(f) || n > FILE_MAX_BYTES) {
    apf(m, "config file '%s' is larger than %d MiB: is it the right file?", path,
        FILE_MAX_BYTES >> 20);
    st = TF_EFORMAT;
  }
  fclose(f);
  if (st) {
    free(buf);
    return st;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return TF_OK;
}

int tf_config_read_text(const char *path, char **text) {
  char m[MSG_MAX] = "";
  size_t len;
  const int st = read_file(path, text, &len, m);
  return st ? tf_error(st, "%s", m) : TF_OK;
}

tf_config *tf_config_load(const char *path, const tf_cfg_key *schema, int n_schema, int n_set,
                          const char *const *set) {
  if (!path) return load(NULL, 0, "config", NULL, schema, n_schema, n_set, set);
  char m[MSG_MAX] = "", *text = NULL, *dir = NULL;
  size_t len;
  int st = read_file(path, &text, &len, m);
  if (!st) {
    /* the directory relative input paths are taken from */
    errno = 0;
    dir = realpath(path, NULL);
    if (!dir) {
      apf(m, "cannot resolve config file path '%s': %s", path, strerror(errno));
      st = TF_EIO;
    } else {
      char *slash = strrchr(dir, '/');
      slash[slash == dir] = '\0';
    }
  }
  if (st) {
    free(text);
    load_status = st;
    tf_error(st, "%s", m);
    return NULL;
  }
  tf_config *cfg = load(text, len, path, dir, schema, n_schema, n_set, set);
  free(text);
  free(dir);
  return cfg;
}

tf_config *tf_config_load_string(const char *text, const char *origin,
                                 const tf_cfg_key *schema, int n_schema, int n_set,
                                 const char *const *set) {
  if (!text) {
    load_status = TF_EINVAL;
    tf_error(TF_EINVAL, "tf_config_load_string: text is NULL");
    return NULL;
  }
  return load(text, strlen(text), origin ? origin : "<string>", NULL, schema, n_schema, n_set,
              set);
}

int tf_config_load_status(void) { return load_status; }

void tf_config_destroy(tf_config *cfg) {
  if (!cfg) return;
  if (cfg->v)
    for (int i = 0; i < cfg->n; i++) {
      free(cfg->v[i].text);
      free(cfg->v[i].list);
      free(cfg->v[i].where);
    }
  free(cfg->v);
  free(cfg->origin);
  free(cfg->basedir);
  free(cfg);
}

/* ---- getters ------------------------------------------------------------------------------ */

static _Noreturn void TF_PRINTF(1, 2) bug(const char *fmt, ...) {
  va_list ap;
  fputs("tradeflow: BUG: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

static const char *const type_names[] = {"INT",    "REAL",    "BOOL",     "STRING",
                                         "CHOICE", "PATH_IN", "PATH_OUT", "REAL_LIST"};

/* type < 0: any type */
static const cfg_val *get(const tf_config *cfg, const char *section, const char *key,
                          const char *fn, int type) {
  if (!cfg || !section || !key)
    bug("%s(%s.%s): NULL argument%s", fn, section ? section : "(null)", key ? key : "(null)",
        cfg ? "" : " (config is NULL)");
  int i = find_key(cfg->schema, cfg->n, section, key);
  if (i < 0) bug("%s: %s.%s is not in the config schema", fn, section, key);
  if (type >= 0 && (int)cfg->schema[i].type != type)
    bug("%s: %s.%s is a TF_CFG_%s key, not TF_CFG_%s", fn, section, key,
        type_names[cfg->schema[i].type], type_names[type]);
  return &cfg->v[i];
}

int64_t tf_config_int(const tf_config *cfg, const char *section, const char *key) {
  return get(cfg, section, key, "tf_config_int", TF_CFG_INT)->i;
}

double tf_config_real(const tf_config *cfg, const char *section, const char *key) {
  return get(cfg, section, key, "tf_config_real", TF_CFG_REAL)->r;
}

int tf_config_bool(const tf_config *cfg, const char *section, const char *key) {
  return get(cfg, section, key, "tf_config_bool", TF_CFG_BOOL)->b;
}

const char *tf_config_str(const tf_config *cfg, const char *section, const char *key) {
  return get(cfg, section, key, "tf_config_str", -1)->text;
}

int tf_config_real_list(const tf_config *cfg, const char *section, const char *key,
                        const double **vals) {
  const cfg_val *v = get(cfg, section, key, "tf_config_real_list", TF_CFG_REAL_LIST);
  if (vals) *vals = v->list;
  return v->n_list;
}

int tf_config_is_set(const tf_config *cfg, const char *section, const char *key) {
  int src = get(cfg, section, key, "tf_config_is_set", -1)->src;
  return src == SRC_FILE || src == SRC_SET;
}

const char *tf_config_where(const tf_config *cfg, const char *section, const char *key) {
  return get(cfg, section, key, "tf_config_where", -1)->where;
}

/* ---- text --------------------------------------------------------------------------------- */

char *tf_config_text(const tf_config *cfg) {
  if (!cfg) return NULL;
  int maxline = tf_config_max_line();
  sbuf b = {0};
  sb_printf(&b, "; tradeflow configuration: every key with the value in effect\n");
  for (int i = 0; i < cfg->n; i++) {
    if (!first_of_section(cfg->schema, i)) continue;
    sb_printf(&b, "\n[%s]\n", cfg->schema[i].section);
    for (int j = i; j < cfg->n; j++) {
      const tf_cfg_key *k = &cfg->schema[j];
      const cfg_val *v = &cfg->v[j];
      if (strcmp(k->section, cfg->schema[i].section)) continue;
      int def = v->src == SRC_DEFAULT;
      if ((k->help && *k->help) || def)
        sb_printf(&b, ";%s%s%s\n", k->help && *k->help ? " " : "", k->help ? k->help : "",
                  def ? " (default)" : "");
      /* " = " reads better; "key=value" is what check_line() guaranteed to fit and read back
       * (after " = ", a leading ';' would start a comment) */
      int spaced = v->text[0] != ';' && (long)(strlen(k->key) + 3 + strlen(v->text)) <= maxline;
      sb_printf(&b, "%s%s%s\n", k->key, spaced ? (*v->text ? " = " : " =") : "=", v->text);
    }
  }
  return sb_finish(&b);
}

char *tf_config_help(const tf_cfg_key *schema, int n_schema) {
  sbuf b = {0};
  for (int i = 0; i < n_schema; i++) {
    if (!first_of_section(schema, i)) continue;
    sb_printf(&b, "%s[%s]\n", b.n ? "\n" : "", schema[i].section);
    for (int j = i; j < n_schema; j++) {
      const tf_cfg_key *k = &schema[j];
      if (strcmp(k->section, schema[i].section)) continue;
      char m[MSG_MAX] = "";
      expect_text(k, m);
      sb_printf(&b, "  %s: %s; ", k->key, m);
      if (!k->def)
        sb_printf(&b, "required\n");
      else if (!*k->def)
        sb_printf(&b, "optional\n");
      else
        sb_printf(&b, "default %s\n", k->def);
      if (k->help && *k->help) sb_printf(&b, "      %s\n", k->help);
    }
  }
  if (!b.p && !b.oom) sb_printf(&b, "%s", "");
  return sb_finish(&b);
}
