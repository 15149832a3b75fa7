/* tradeflow — the result files that `tradeflow eval` writes and `tradeflow plot` reads
 * (plain data and their I/O; evaluating a model to fill one is evaluate.h).
 *
 * One file holds the metrics of one flow at K conditions c_0 < ... < c_{K-1} for M named
 * observables of its physics module: its per-sample observables followed by its derived
 * quantities (functions of their means, e.g. chi and the Binder cumulant of lattice fields,
 * tf_physics_derived; their errors are blocked-jackknife errors and their tau_int is NaN).  Layout (docs/FILES.md, "Evaluation results"):
 *   per-condition float64 [K] datasets   one per entry of tf_eval_result's `col` (names below)
 *   per-observable float64 [K, M] tables one per entry of `tab`; attribute `observables`
 *   root attributes                      format = "tradeflow-eval", format_version = 1,
 *                                        tradeflow_version, created, model, physics,
 *                                        physics_name, param, checkpoint, config, kl_method
 *                                        (strings); observables (string [M]); N, seed, imh_n,
 *                                        bootstrap, kl_grid (int64)
 * Missing values (no exact log Z, no reference samples, IMH off...) are NaN.  Counts are stored
 * as float64 like everything per condition, so one reader covers every column.
 *
 * Writing is atomic (temporary in the same directory, fsync, rename), as for every file
 * tradeflow writes (h5io.h, "Atomic writes").  Nothing here is collective; call from one rank.
 */
#ifndef TRADEFLOW_RESULT_H
#define TRADEFLOW_RESULT_H

#include <stddef.h>
#include <stdint.h>


#ifdef __cplusplus
extern "C" {
#endif

#define TF_RESULT_FORMAT "tradeflow-eval"

/* Per-condition columns, [K] each.  The enum order is the order of `col` and of
 * tf_eval_col_name(). */
enum {
  TF_EV_C = 0,       /* condition value */
  TF_EV_N_VALID,     /* flow samples with a usable log-weight (finite or -inf) */
  TF_EV_ESS,         /* Kish ESS / N */
  TF_EV_ESS_ERR,     /* bootstrap error of ESS / N */
  TF_EV_LOGZ,        /* log Zhat = LSE(log w) - log N */
  TF_EV_LOGZ_ERR,    /* bootstrap error of log Zhat */
  TF_EV_LOGZ_EXACT,  /* the module's exact log Z(c) (NaN: none) */
  TF_EV_LOGZ_DIFF,   /* logz - logz_exact */
  TF_EV_KL,          /* KL(p_exact || p_flow) by quadrature, nats (NaN: not computed) */
  TF_EV_KL_ERR,      /* |KL(h) - KL(2h)|: grid-resolution estimate */
  TF_EV_NLL_REF,     /* -mean log p_flow on reference samples at c, nats */
  TF_EV_NLL_REF_ERR, /* its standard error */
  TF_EV_N_REF,       /* reference samples used (0: none) */
  TF_EV_REF_SOURCE,  /* 0 none, 1 the module's exact sampler, 2 a --reference file */
  TF_EV_IMH_ACCEPT,  /* independence-Metropolis acceptance rate */
  TF_EV_N_COLS
};

/* Per-observable tables, [K, M] each (row k: condition k; column j: observable j). */
enum {
  TF_EV_OBS_RW = 0,   /* self-normalised reweighted mean */
  TF_EV_OBS_RW_ERR,   /* its bootstrap error */
  TF_EV_OBS_IMH,      /* mean over the independence-Metropolis chain */
  TF_EV_OBS_IMH_ERR,  /* sd sqrt(2 tau_int / n) */
  TF_EV_OBS_TAU,      /* tau_int of the observable along the chain */
  TF_EV_OBS_TAU_ERR,  /* its Madras-Sokal error */
  TF_EV_OBS_REF,      /* mean on the reference samples */
  TF_EV_OBS_REF_ERR,  /* its error (exact samples: sd / sqrt(n); file: with tau_int) */
  TF_EV_N_TABS
};

typedef struct {
  int64_t k;                 /* conditions */
  int m;                     /* observables */
  char **obs_names;          /* m names */
  double *col[TF_EV_N_COLS]; /* each [k] */
  double *tab[TF_EV_N_TABS]; /* each [k * m], row-major */
  /* root attributes (strings owned by the struct; "" if absent) */
  char *model, *physics, *physics_name, *param, *checkpoint, *config_text, *kl_method;
  int64_t n, seed, imh_n, bootstrap, kl_grid;
} tf_eval_result;

/* Dataset names ("c", "ess", ..., "obs_rw", ...). */
const char *tf_eval_col_name(int i);
const char *tf_eval_tab_name(int i);

/* Zeroes *r and allocates every column and table for k conditions and m observables, filled
 * with NaN; obs_names are copied (NULL: "obs<j>").  TF_ENOMEM (r is left freed). */
int tf_eval_result_alloc(tf_eval_result *r, int64_t k, int m, const char *const *obs_names);
/* Frees everything and zeroes *r.  NULL is harmless. */
void tf_eval_result_free(tf_eval_result *r);
/* Copies s (NULL: "") into *field, freeing the previous string. */
int tf_eval_result_set_str(char **field, const char *s);

/* TF_OK if a file can be created at path (a temporary is made and removed): an unwritable
 * output is reported before the work, not after it. */
int tf_eval_result_probe(const char *path);
/* Writes r atomically to path. */
int tf_eval_result_write(const char *path, const tf_eval_result *r);
/* Reads a result file into *r (overwritten, not freed; zeroed on error).  Checks format,
 * format_version, that `c` exists and that every column has K rows and every table K x M;
 * a column or table absent from the file (written by an older version) reads as NaN. */
int tf_eval_result_read(const char *path, tf_eval_result *r);

#ifdef __cplusplus
}
#endif
#endif
