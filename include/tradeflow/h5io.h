/* tradeflow — HDF5 files: checkpoints, sample files and training-data matrices.
 *
 * Every file kind, its datasets, shapes, types and attributes is described for Python (h5py)
 * users in docs/FILES.md; the layouts are summarised next to each writer below.
 *
 * Atomic writes
 *   A file is assembled in memory (HDF5's "core" driver), then written by this module to
 *   "<path>.tmp.<pid>" in the target's directory (created at the start, so a missing or
 *   unwritable directory is reported before any work), fsync'd, renamed over <path>, and the
 *   directory is fsync'd.  A reader sees either the old file or the complete new one, even
 *   after a crash or a full disk.  On any error the temporary is removed and an existing <path>
 *   is untouched.  Memory: the file's size while it is built, twice that briefly at the end.
 *   (HDF5 1.10 never writes to disk itself here: after one of its own writes fails, it can no
 *   longer close the file and crashes at exit.)
 *
 * Errors
 *   Functions return TF_OK or a status of error.h; tf_errmsg() names the file, the dataset or
 *   attribute, and what was expected against what was found (shape, type, value), with HDF5's
 *   own innermost reason appended as "(HDF5: ...)" where there is one.  HDF5's automatic
 *   error-stack printing is switched off for the duration of every call here (and restored
 *   afterwards), so users see only the message.  On error, outputs are left unchanged unless
 *   stated otherwise.
 *     TF_EIO      missing file, unreadable or unwritable path
 *     TF_EFORMAT  not an HDF5 file, truncated/corrupt file, missing or malformed dataset or
 *                 attribute, shape or type mismatch with what the caller expects
 *     TF_ENUMERIC NaN/Inf where finite values are required
 *     TF_EINVAL / TF_ERANGE / TF_ENOMEM  bad arguments / out-of-range rows / allocation
 *
 * Concurrency: serial HDF5 (files are read with the default file-access property list).
 * Nothing here is collective and nothing calls MPI, except the tf_sample_pwriter functions
 * (collective over a tf_dist); call the others from one rank (or from each rank on its own
 * files).  Call from one thread at a time (the Debian HDF5 builds are not thread-safe).
 */
#ifndef TRADEFLOW_H5IO_H
#define TRADEFLOW_H5IO_H

#include <stdint.h>

#include "tradeflow/dist.h"
#include "tradeflow/error.h"
#include "tradeflow/optim.h"
#include "tradeflow/params.h"
#include "tradeflow/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Format identifiers stored in the root attributes "format" and "format_version".  A reader
 * refuses a newer format_version than it knows (TF_EUNSUP). */
#define TF_CHECKPOINT_FORMAT "tradeflow-checkpoint"
#define TF_SAMPLES_FORMAT "tradeflow-samples"
#define TF_H5_FORMAT_VERSION 1

/* The tradeflow version string this library writes into files ("unknown" if the library was
 * built without TF_VERSION_STRING). */
const char *tf_h5_version(void);

/* ================================ checkpoints ================================================
 *
 * Layout (all attributes on the root group "/" unless said otherwise):
 *   attrs  format = "tradeflow-checkpoint" (string), format_version = 1 (int64)
 *          tradeflow_version, precision ("float32" | "float64"), created (ISO 8601 UTC),
 *          model, config (strings, UTF-8, variable length)
 *          step, skipped_steps, consecutive_skips (int64)
 *          rng_seed (uint64), rng_pos (uint64 [TF_CHECKPOINT_RNG_WORDS])
 *          best_val_loss (float64)
 *   /params/<name>   one dataset per parameter tensor, its shape, float32 or float64 (the
 *                    writing build's tf_real); attribute offset (int64): where the tensor
 *                    starts in the parameter slab, i.e. in /optim/m and /optim/v
 *   /optim/m, /optim/v   float64 [n] Adam moments (only if an optimizer was saved),
 *                        /optim attribute steps (int64)
 *   /optim/ema       float64 [n] the parameter average (optim.h), same slab layout; only if
 *                    the optimizer kept one
 *   /extra           group whose attributes are the extra named scalars (float64 or int64)
 */

#define TF_CHECKPOINT_RNG_WORDS 8  /* rng_pos entries */
#define TF_CHECKPOINT_MAX_EXTRA 256 /* extra named scalars (TRADE: 3 per grid point) */
#define TF_CHECKPOINT_KEY_LEN 64   /* extra key and model name, including the NUL */

typedef enum { TF_META_F64 = 0, TF_META_I64 = 1 } tf_meta_kind;

typedef struct {
  char key[TF_CHECKPOINT_KEY_LEN];
  tf_meta_kind kind;
  double f64;  /* valid when kind == TF_META_F64 */
  int64_t i64; /* valid when kind == TF_META_I64 */
} tf_meta_entry;

/* Everything a resumed run needs besides the parameters and moments.  Plain data: fill the
 * fields directly, except config_text (use tf_checkpoint_meta_set_config) and extra (use
 * tf_checkpoint_meta_set_f64/_i64).  Initialise with tf_checkpoint_meta_init, release with
 * tf_checkpoint_meta_clear. */
typedef struct {
  int64_t step;              /* training steps completed */
  int64_t skipped_steps;     /* steps refused for a non-finite gradient, in total */
  int64_t consecutive_skips; /* ... in a row at the time of the checkpoint */
  uint64_t rng_seed;         /* the run's Philox seed (rng.h) */
  /* Stream positions: the RNG is counter-based, so a stream is re-created from
   * (seed, rank, purpose, step) and a block position.  The trainer defines the entries; unused
   * ones are 0. */
  uint64_t rng_pos[TF_CHECKPOINT_RNG_WORDS];
  double best_val_loss;      /* +Inf until a validation loss exists */
  char model[TF_CHECKPOINT_KEY_LEN]; /* model name, NUL-terminated */
  char *config_text;         /* full config text, NUL-terminated, owned by this struct (NULL: "") */
  int n_extra;
  tf_meta_entry extra[TF_CHECKPOINT_MAX_EXTRA];
  /* Filled by load/read_meta from the file; ignored by save, which writes its own. */
  char version[32];          /* tradeflow version that wrote the file */
  char precision[16];        /* "float32" or "float64": the writer's tf_real */
  char created[32];          /* creation time, "YYYY-MM-DDThh:mm:ssZ" */
} tf_checkpoint_meta;

/* Zeroes *m and sets best_val_loss = +Inf. */
void tf_checkpoint_meta_init(tf_checkpoint_meta *m);
/* Frees config_text and re-initialises *m.  NULL is harmless. */
void tf_checkpoint_meta_clear(tf_checkpoint_meta *m);
/* Copies `text` (NULL: none) into m->config_text, freeing the previous text. */
int tf_checkpoint_meta_set_config(tf_checkpoint_meta *m, const char *text);
/* Set (insert or overwrite) an extra named scalar.  key: 1..63 printable ASCII characters.
 * TF_ERANGE when TF_CHECKPOINT_MAX_EXTRA keys are already in use. */
int tf_checkpoint_meta_set_f64(tf_checkpoint_meta *m, const char *key, double value);
int tf_checkpoint_meta_set_i64(tf_checkpoint_meta *m, const char *key, int64_t value);
/* Look up an extra scalar.  TF_EINVAL if the key is absent; _f64 converts an int64 entry,
 * _i64 refuses a float64 entry (TF_EINVAL). */
int tf_checkpoint_meta_get_f64(const tf_checkpoint_meta *m, const char *key, double *value);
int tf_checkpoint_meta_get_i64(const tf_checkpoint_meta *m, const char *key, int64_t *value);

/* Write a checkpoint atomically.
 *   params: finalized; every tensor becomes /params/<name> (names must not contain '/').
 *   optim:  NULL, or an optimizer over tf_params_size(params) values (checked); not modified.
 *   meta:   NULL for an all-default meta.
 * Parameters are stored in the build's precision, so a round trip is bit-identical (NaN
 * payloads and denormals included). */
int tf_checkpoint_save(const char *path, const tf_params *params, const tf_optim *optim,
                       const tf_checkpoint_meta *meta);

/* Read a checkpoint into an already-built model.
 *   params: finalized, same architecture: every parameter must be in the file with the same
 *           shape and the file must hold no other parameter (errors name the dataset and both
 *           shapes).  Values stored in the other precision are converted (float64 -> float32
 *           rounds to nearest).
 *   optim:  NULL (the file's moments are ignored), or an optimizer of the same size; the file
 *           must then hold /optim.  Receives m, v and the step count; if the model declares
 *           its parameters in another order than the writer did, the moments are moved with
 *           their parameters (by the offset attributes).  An optimizer that averages receives
 *           /optim/ema, or, when the file has none, an average reset to the loaded parameters.
 *   meta_out: NULL, or receives the meta; its previous contents are overwritten, not freed.
 *           Release with tf_checkpoint_meta_clear.
 * All-or-nothing: on error params, optim and meta_out are unchanged. */
int tf_checkpoint_load(const char *path, tf_params *params, tf_optim *optim,
                       tf_checkpoint_meta *meta_out);

/* The weights a finished model is used with: as tf_checkpoint_load without an optimizer, but
 * the parameters receive the average /optim/ema (rounded to tf_real) when the file holds one.
 * *averaged (if not NULL) tells which: 1 the average, 0 the raw parameters. */
int tf_checkpoint_load_averaged(const char *path, tf_params *params, int *averaged,
                                tf_checkpoint_meta *meta_out);

/* Only the meta (config text included), without building a model: what the CLI reads to
 * rebuild the model before tf_checkpoint_load.  meta_out as for tf_checkpoint_load. */
int tf_checkpoint_read_meta(const char *path, tf_checkpoint_meta *meta_out);

/* Only the config text: *text receives a malloc'd NUL-terminated copy ("" if empty); the
 * caller frees it. */
int tf_checkpoint_read_config(const char *path, char **text);

/* ================================ sample files ===============================================
 *
 * Layout:
 *   /x      float64 [N, D]  samples, row-major
 *   /c      float64 [N]     condition of each sample
 *   /log_p  float64 [N]     flow log-density log p_theta(x | c), nats
 *   /log_q  float64 [N]     target unnormalised log-density, NaN where none exists
 *   /log_w  float64 [N]     log importance weight, log_q - log_p (NaN where log_q is NaN)
 *   root attrs  format = "tradeflow-samples", format_version = 1 (int64), N, D (int64),
 *               model, physics, physics_params, config, tradeflow_version, created (strings)
 * Datasets are chunked (about 512 KiB per chunk, whole rows), with the shuffle filter and zlib
 * (deflate) level 4 by default; h5py reads them without extra plugins.
 * Validity: x, c and log_p are finite; log_q is NaN (none), -Inf (zero density) or finite;
 * log_w equals log_q - log_p (to rounding). */

typedef struct {
  const char *model;          /* model name (NULL: "") */
  const char *physics;        /* physics module name (NULL: "") */
  const char *physics_params; /* the physics module's parameters as one string (NULL: "") */
  const char *config_text;    /* the run's full config (NULL: "") */
  int deflate;                /* zlib level 1..9; 0: default (4); -1: no compression */
} tf_sample_attrs;

/* A block of n samples, borrowed from the caller for the duration of one call. */
typedef struct {
  int64_t n;           /* rows */
  const double *x;     /* (n, D) row-major */
  const double *c;     /* (n) */
  const double *log_p; /* (n) */
  const double *log_q; /* (n), NaN where no target density exists; NULL: all NaN */
  const double *log_w; /* (n), must equal log_q - log_p; NULL: computed here (NULL if log_q is) */
} tf_sample_block;

/* Streaming writer: append blocks as they are drawn, publish the file at close (the file is
 * held in memory, compressed, until then: see "Atomic writes").
 *   w = NULL; tf_sample_writer_open(&w, path, D, &attrs);
 *   tf_sample_writer_append(w, &block);   ...any number of times
 *   tf_sample_writer_close(w);            ...N written, temporary renamed over path
 * <path> appears only at a successful close.  A block refused by validation changes nothing
 * and the writer goes on; after any other error in append the writer refuses further appends,
 * and close removes the temporary and returns that first error.  abort discards. */
typedef struct tf_sample_writer tf_sample_writer;

int tf_sample_writer_open(tf_sample_writer **w, const char *path, int64_t d,
                          const tf_sample_attrs *attrs);
/* Validates the block (finiteness, log_w consistency: TF_ENUMERIC / TF_EINVAL naming the
 * array and row) before writing anything of it; rows are numbered from the file's start. */
int tf_sample_writer_append(tf_sample_writer *w, const tf_sample_block *block);
int64_t tf_sample_writer_rows(const tf_sample_writer *w); /* N so far */
/* Finishes and frees w (also on error).  NULL is harmless (TF_OK). */
int tf_sample_writer_close(tf_sample_writer *w);
/* Frees w and removes the temporary; <path> is untouched.  NULL is harmless. */
void tf_sample_writer_abort(tf_sample_writer *w);

/* One-shot: open, append `all` (D columns), close. */
int tf_samples_write(const char *path, int64_t d, const tf_sample_attrs *attrs,
                     const tf_sample_block *all);

/* A sample file in memory.  Every pointer is malloc'd and owned by the struct. */
typedef struct {
  int64_t n, d;
  double *x;     /* (N, D) */
  double *c, *log_p, *log_q, *log_w; /* (N) each */
  char *model, *physics, *physics_params, *config_text, *version, *created; /* "" if absent */
} tf_samples;

/* Read a whole sample file, validating shapes (x rank 2; the rest rank 1 of length N), the
 * N and D attributes, float types, finiteness and log_w consistency.  *out is overwritten
 * (not freed) and left zeroed on error.  For files too big for memory, read blocks of rows
 * with tf_h5_matrix_open on "x", "c", ... instead. */
int tf_samples_read(const char *path, tf_samples *out);
/* Frees every array and string and zeroes *s.  NULL is harmless. */
void tf_samples_free(tf_samples *s);

/* ================================ sample files, written by many ranks ========================
 *
 * One sample file written collectively by every rank of a process group (dist.h), each rank
 * putting its own rows, through parallel HDF5 (MPI-IO, collective transfers).  The file has the
 * layout above: the same datasets, chunking, filters and root attributes; tf_samples_read and
 * h5py read it like any other.  N is fixed at open.
 *
 *   w = NULL; tf_sample_pwriter_open(&w, dist, path, D, N, &attrs);            all ranks
 *   tf_sample_pwriter_write(w, row0, &block);   all ranks, the same number of times;
 *                                               a rank with nothing to write passes n == 0
 *   tf_sample_pwriter_close(w);                 all ranks; every row of [0, N) must have been
 *                                               written exactly once; publishes the file
 *
 * Atomic as the serial writer: the ranks write "<path>.tmp.<pid of rank 0>" (created by rank 0
 * at open in the target's directory, so an unwritable directory fails the open); at close rank
 * 0 fsyncs it, renames it over <path> and fsyncs the directory.  On any error the temporary is
 * removed and an existing <path> is untouched.  Unlike the serial writer the data goes to disk
 * as it is written: each rank keeps only its rows that do not yet fill a whole chunk (about
 * 512 KiB per dataset, plus one block), so that compressed chunks are written once; a write
 * reports validation errors at once, but an HDF5 failure of buffered rows may show at a later
 * write or at close.  For the serial group (no MPI) the file is built in memory and written at
 * close, as by tf_sample_writer.
 *
 * Errors: every function is collective and returns the same status on every rank, with the
 * message of the lowest failing rank prefixed "rank R of P: " (tf_dist_agree): a NaN in one
 * rank's block fails the write on all ranks, naming the rank, the array and the row.  All
 * ranks must pass the same path, D, N and attrs (checked: TF_EINVAL).  A write refused before
 * any data was written (validation, rows outside [0, N): TF_ERANGE, allocation) leaves the
 * writer usable; after a failed HDF5 write every further write fails and close removes the
 * temporary.  Not caught: ranks that call write a different number of times (they hang, as
 * with any collective call). */
typedef struct tf_sample_pwriter tf_sample_pwriter;

/* (collective) d: the process group (copied; its communicator must stay valid until close or
 * abort); n_total: N >= 0. */
int tf_sample_pwriter_open(tf_sample_pwriter **w, const tf_dist *d, const char *path,
                           int64_t dim, int64_t n_total, const tf_sample_attrs *attrs);
/* (collective) This rank's block b (NULL or b->n == 0: nothing this round) as rows
 * [row0, row0 + b->n) of the file; validated as by tf_sample_writer_append. */
int tf_sample_pwriter_write(tf_sample_pwriter *w, int64_t row0, const tf_sample_block *b);
/* Rows accepted from this rank so far (not collective). */
int64_t tf_sample_pwriter_rows(const tf_sample_pwriter *w);
/* (collective) Finishes and frees w (also on error).  NULL is harmless (TF_OK) when it is NULL
 * on every rank. */
int tf_sample_pwriter_close(tf_sample_pwriter *w);
/* (collective) Frees w and removes the temporary; <path> is untouched.  NULL: as for close. */
void tf_sample_pwriter_abort(tf_sample_pwriter *w);

/* ================================ reference MCMC files ========================================
 *
 * What `tradeflow mcmc` writes: Markov chains of a physics module's reference sampler (HMC for
 * lattice fields, MALA otherwise) at K conditions, usable as training data (data.file with
 * data.condition_dataset = c) and as eval --reference.
 *   /x      float64 [N, D]  states, row-major; rows grouped by condition, then by chain, then
 *                           in chain order (what autocorrelation estimates need)
 *   /c      float64 [N]     condition of each row
 *   /log_q  float64 [N]     log q(x | c) of the module, nats
 *   /chain  int64   [N]     chain index within its condition
 *   /obs    float64 [N, M]  the module's observables per row; attribute observables (string [M])
 *   /conditions/c, accept, step, seconds, tau_abs_m ...: float64 [K] per-condition summary
 *           (any number of named columns, given by the writer's caller)
 *   root attrs  format = "tradeflow-mcmc", format_version = 1, tradeflow_version, created,
 *               physics, physics_params, sampler, config (strings); N, D, K, chains,
 *               n_per_chain, burn_in, thin, seed (int64)
 * Written atomically, uncompressed (chains are short next to sample files). */
#define TF_MCMC_FORMAT "tradeflow-mcmc"

typedef struct {
  int64_t n, d, m;            /* rows, dimension, observables */
  const double *x;            /* (n, d) */
  const double *c, *log_q;    /* (n) */
  const int64_t *chain;       /* (n) */
  const double *obs;          /* (n, m) */
  const char *const *obs_names; /* m names */
  int64_t k;                  /* conditions */
  int n_summary;              /* per-condition columns */
  const char *const *summary_names;
  const double *const *summary; /* n_summary arrays of k values */
  const char *physics, *physics_params, *sampler, *config_text; /* NULL: "" */
  int64_t chains, n_per_chain, burn_in, thin, seed;
} tf_mcmc_file;

/* Validates shapes and finiteness of x, c, log_q (TF_EINVAL / TF_ENUMERIC naming the row) and
 * writes atomically. */
int tf_mcmc_file_write(const char *path, const tf_mcmc_file *f);

/* ================================ data matrices ==============================================
 *
 * Any 1-D or 2-D dataset of an integer or floating-point type (any size, either byte order)
 * read as float64: a 1-D dataset of length n is an n x 1 matrix.  `dataset` is a path inside
 * the file ("x", "/data/train/x").  Integers beyond 2^53 lose precision. */

enum {
  TF_H5_FINITE = 1u << 0 /* refuse NaN/Inf (TF_ENUMERIC naming the row and column) */
};

/* Whole matrix into *out (malloc'd, row-major n_rows x n_cols; the caller frees it). */
int tf_h5_read_matrix(const char *path, const char *dataset, unsigned flags, int64_t *n_rows,
                      int64_t *n_cols, double **out);

/* An open matrix for reading row blocks of data too big for memory (the file stays open until
 * close; plan once, read many times). */
typedef struct tf_h5_matrix tf_h5_matrix;

int tf_h5_matrix_open(tf_h5_matrix **m, const char *path, const char *dataset);
int64_t tf_h5_matrix_rows(const tf_h5_matrix *m);
int64_t tf_h5_matrix_cols(const tf_h5_matrix *m);
/* Rows [row0, row0 + n) into out (caller's buffer of n * cols doubles, row-major).  TF_ERANGE
 * if the range is not inside the matrix.  On TF_ENUMERIC out holds the block as read. */
int tf_h5_matrix_read(tf_h5_matrix *m, int64_t row0, int64_t n, unsigned flags, double *out);
void tf_h5_matrix_close(tf_h5_matrix *m); /* NULL is harmless */

/* *exists = 1 if `dataset` names a dataset in the file, 0 if not (absent, or a group).  Fails
 * only if the file cannot be opened. */
int tf_h5_has_dataset(const char *path, const char *dataset, int *exists);

/* Every dataset in the file, as absolute paths ("/params/w0"), sorted by name within each
 * group, hard links only.  *names is malloc'd (free with tf_h5_free_names). */
int tf_h5_list_datasets(const char *path, char ***names, int *count);
void tf_h5_free_names(char **names, int count);

#ifdef __cplusplus
}
#endif
#endif
