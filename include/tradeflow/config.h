/* tradeflow — INI configuration files checked against a caller-owned schema.
 *
 * A command (train, sample, eval...) describes its settings as a table of tf_cfg_key and loads
 * a file plus `--set section.key=value` overrides with tf_config_load().  Everything is checked
 * before the call returns, so a run never starts on a config it would reject later: the first
 * problem found becomes one message (tf_errmsg()) naming where it is (file and line, or the
 * --set argument), the section.key, the offending value and what would be accepted, and the
 * load returns NULL.
 *
 * ---- The file syntax (for people writing config files) ------------------------------------
 *
 *   ; a comment           # also a comment (only at the start of a line)
 *   [train]
 *   lr = 3e-4             ; a ';' after a space starts a comment, also after a value
 *   steps: 20000          ; ':' may stand for '='
 *   optimizer = adamw
 *   [data]
 *     samples = runs/phi4 L=16.h5   ; indentation is ignored; values may contain '=' and ':'
 *
 * - A line is a [section] header, a `key = value` pair, a comment or blank.  Every key belongs
 *   to a section: a key before the first header is an error.  A section may appear more than
 *   once; a key may be given only once per file.
 * - Names are case-sensitive.  Spaces around names and values are removed.  There is no
 *   quoting and no escaping: quotes are part of the value, and a value cannot contain a ';'
 *   that follows a space or tab (that starts a comment).  '#' starts a comment only as the
 *   first non-blank character of a line, so `label = run #3` keeps its '#'.
 * - Nothing after a header's ']' except a comment.  One value per line: an indented line does
 *   NOT continue the previous value (unlike Python's configparser) — it is read as a line of
 *   its own, so indentation is free.
 * - Lines are at most tf_config_max_line() characters (198 with Debian's libinih 55, whose
 *   line buffer is 200 bytes); longer lines are an error, never silently split.  Long paths
 *   can be written relative to the file (below) or given with --set, which has no limit of its
 *   own but whose value must still fit a config line once resolved (tf_config_text() writes
 *   every value back as one line and must load again).
 * - No ~ or $VARIABLE expansion.  UTF-8 text; a byte-order mark and CRLF line ends are fine.
 *
 * Values, by type:
 *   INT        decimal digits with an optional sign ("1e5" and "0x10" are rejected), 64-bit.
 *   REAL       strtod syntax ("3e-4", ".5", "-2"); finite only: inf and nan are rejected.
 *   BOOL       true/false, yes/no, on/off, 1/0, in any letter case.
 *   STRING     any text, possibly empty.
 *   CHOICE     one of the schema's alternatives, exactly (case-sensitive).
 *   REAL_LIST  comma-separated REALs ("0.5, 1, 2.25"); spaces around commas are fine; no empty
 *              element.  The range applies to every element.
 *   PATH_IN    an existing, readable file or directory.  A relative path in a config file is
 *              taken from the directory of that file (a config and its inputs move together);
 *              in --set, a default, or a string loaded with tf_config_load_string(), from the
 *              current directory.  The getter and tf_config_text() give the canonical
 *              absolute path (realpath: symbolic links resolved).
 *   PATH_OUT   an output file or directory whose parent directory exists and is writable (the
 *              output itself need not exist).  A relative path is taken from the current
 *              directory, wherever it was written: outputs belong to the run (the job's
 *              working directory), not to a config file that several jobs may share.  The
 *              getter gives the absolute path (parent canonicalised).
 * An empty value is accepted for STRING; for REAL_LIST (no elements), PATH_IN and PATH_OUT
 * ("not given", no file-system check) only when the key's default is "" (optional keys); never
 * for INT, REAL, BOOL or CHOICE.
 *
 * Precedence: schema default < the file < --set arguments, in order (a later --set of the same
 * key wins).  --set may name keys absent from the file.  Every value in the file is checked
 * (syntax, type, range, choice) even if --set replaces it; the file-system checks of paths
 * apply only to the values finally in effect, so a shared config whose input lives on another
 * machine can be run with `--set data.samples=...` pointing to a local copy.
 *
 * ---- Errors ------------------------------------------------------------------------------
 *
 * Loads return NULL and set tf_errmsg() (the status is not returned; the CLI exits non-zero).
 * When a file holds several problems, the one on the earliest line is reported; --set problems
 * come after the file's, then missing required keys (all named in one message), then paths,
 * then values a config line cannot hold.  Message shapes:
 *   train.ini:7: train.lr = '12x': not a real number; expected a finite real number in
 *     [1e-08, 1]
 *   train.ini:3: unknown key 'lrr' in section [train] (did you mean 'lr'?); keys in [train]: ...
 *   --set argument 2: expected section.key=value, got 'lr0.1'
 *   train.ini: missing required key data.samples (training samples); add `samples = ...`
 *     under [data] or pass --set data.samples=...
 * Status codes (readable with tf_strstatus(), for callers that care):
 *   TF_EIO       the config file cannot be read; a PATH_IN or a PATH_OUT's directory fails
 *   TF_EFORMAT   syntax, line too long, unknown section or key, duplicate key, malformed value,
 *                missing required key, a value a config line cannot hold
 *   TF_ERANGE    a number out of its range, a CHOICE not among the alternatives
 *   TF_ENUMERIC  inf or nan given for a REAL or REAL_LIST
 *   TF_EINVAL    bad --set syntax; an invalid schema (a programming error: its message starts
 *                with "config schema:")
 *   TF_ENOMEM    allocation failed
 * Use tf_config_load_status() right after a load to get the status as an int.
 *
 * Getters take (section, key) of a schema entry of the matching type.  Asking for a key that
 * is not in the schema, or with the getter of another type, is a bug in the calling code, not
 * a user error: the getter prints "tradeflow: BUG: ..." naming the key to stderr and calls
 * abort().
 *
 * Thread safety: loads touch no global state (libinih's run-time settings are left alone);
 * a loaded tf_config is read-only and may be shared between threads.  Nothing here is
 * collective: with MPI, load on every rank, or load on rank 0 and pass tf_config_text() to
 * tf_config_load_string() on the others (its paths are absolute, so it means the same on
 * every rank; the path checks then run on each rank).
 */
#ifndef TRADEFLOW_CONFIG_H
#define TRADEFLOW_CONFIG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  TF_CFG_INT,
  TF_CFG_REAL,
  TF_CFG_BOOL,
  TF_CFG_STRING,
  TF_CFG_CHOICE,
  TF_CFG_PATH_IN,  /* must exist and be readable */
  TF_CFG_PATH_OUT, /* its directory must exist and be writable */
  TF_CFG_REAL_LIST /* comma-separated reals */
} tf_cfg_type;

/* One setting.  Section and key names are non-empty and hold no space, '.', '=', ':', ';',
 * '#', '[' or ']' (they are written as `section.key` in --set and in messages). */
typedef struct {
  const char *section, *key;
  tf_cfg_type type;
  const char *def;     /* default, as it would be written in the file; NULL: required */
  double min, max;     /* inclusive range of INT, REAL and every REAL_LIST element; min > max:
                          unbounded; -INFINITY / INFINITY make a one-sided range */
  const char *choices; /* CHOICE only: alternatives separated by '|', e.g. "adam|adamw" */
  const char *help;    /* one line: used in messages and by tf_config_help() */
} tf_cfg_key;

typedef struct tf_config tf_config;

/* Load `path` (NULL: no file, defaults and --set only) checked against schema[0..n_schema).
 * set[0..n_set) are "section.key=value" overrides applied after the file, in order; messages
 * name them "--set argument I" with I counted from 1.  The schema is not copied: it must
 * outlive the returned config (a static const table, typically).  Defaults are checked too
 * (except path existence) so a wrong schema fails in the first test that loads it.
 * NULL on any error, with the message in tf_errmsg(). */
tf_config *tf_config_load(const char *path, const tf_cfg_key *schema, int n_schema, int n_set,
                          const char *const *set);

/* The same for config text held in memory (a checkpoint's recorded config, a test).  `origin`
 * names it in messages ("checkpoint.h5:/config"; NULL: "<string>"); relative PATH_IN values
 * in it are taken from the current directory. */
tf_config *tf_config_load_string(const char *text, const char *origin,
                                 const tf_cfg_key *schema, int n_schema, int n_set,
                                 const char *const *set);

/* The whole text of a config file into *text (malloc'd, NUL-terminated; the caller frees),
 * with the loader's checks and messages (missing, a directory, unreadable, implausibly
 * large), for commands that read selected sections themselves. */
int tf_config_read_text(const char *path, char **text);

/* The status of this thread's last failed load (TF_OK after a successful one). */
int tf_config_load_status(void);

/* Releases everything the config owns; NULL is harmless. */
void tf_config_destroy(tf_config *cfg);

/* Typed getters (see "Errors" above for misuse).  Strings and arrays returned are owned by the
 * config and valid until tf_config_destroy(). */
int64_t tf_config_int(const tf_config *cfg, const char *section, const char *key);
double tf_config_real(const tf_config *cfg, const char *section, const char *key);
int tf_config_bool(const tf_config *cfg, const char *section, const char *key); /* 0 or 1 */
/* Any type: the effective value in canonical form, as tf_config_text() writes it, so that equal
 * values give equal strings (compare a checkpoint's settings with strcmp): INT in decimal
 * ("+0512" -> "512"), REAL as the shortest text that reads back exactly ("3e-4" -> "0.0003",
 * "2.0" -> "2"), BOOL as "true"/"false", REAL_LIST as "0.5, 1, 2.25", STRING and CHOICE as
 * given, paths resolved to absolute ("" for an optional path not given). */
const char *tf_config_str(const tf_config *cfg, const char *section, const char *key);
/* REAL_LIST: the number of elements; *vals (if not NULL) receives them (NULL when empty). */
int tf_config_real_list(const tf_config *cfg, const char *section, const char *key,
                        const double **vals);

/* 1 if the value came from the file or --set, 0 if it is the schema default. */
int tf_config_is_set(const tf_config *cfg, const char *section, const char *key);

/* Where the value came from, for the caller's own messages about combinations of keys
 * ("train.ini:12", "--set argument 2", "default").  Owned by the config. */
const char *tf_config_where(const tf_config *cfg, const char *section, const char *key);

/* The effective configuration as INI text: every schema key with its value, defaults included
 * (marked by a comment), one [section] block per section in schema order, each key preceded by
 * its help as a comment, values in the canonical form of tf_config_str().  Loading it back with
 * the same schema gives the same values (paths are absolute) and the same text, apart from the
 * "(default)" marks, since every key is then given.  Caller frees; NULL if out of memory. */
char *tf_config_text(const tf_config *cfg);

/* A listing of the schema for `--help`-style output: per section, one line per key with its
 * type, accepted range or alternatives, default (or "required") and help.  Caller frees; NULL
 * if out of memory. */
char *tf_config_help(const tf_cfg_key *schema, int n_schema);

/* The longest config line (characters, without the line end) this build of libinih reads. */
int tf_config_max_line(void);

#ifdef __cplusplus
}
#endif
#endif
