/* bench_mpi — tradeflow's data-parallel benchmarks, run under an MPI launcher (see
 * bench/README.md, section "mpi_weak", and docs/MPI-scaling.md).
 *
 *   bench_mpi --list                              one line per case: NAME KIND DESCRIPTION
 *   mpirun -np P bench_mpi [options] NAME...      run the named cases on P ranks
 *
 * Cases:
 *   mpi_weak   weak scaling of real training steps through the library's trainer
 *              (tf_trainer_create / tf_trainer_run, cfg.dist = MPI_COMM_WORLD's group), NLL
 *              on synthetic N(0, I) data with c = 1, a fixed batch PER RANK; the median
 *              per-step time, the trainer's time in collectives per step
 *              (tf_trainer_comm_seconds) and, separately, tf_dist_mean alone on a
 *              gradient-sized buffer (after an MPI_Barrier, so without waiting for a slower
 *              rank) and the step's two small collectives alone.  With several ranks the
 *              same job also times, interleaved with those steps, one rank training alone
 *              (the others asleep) and every rank training a model of its own at once: the
 *              1-rank time and the cost of sharing the machine, paired in time with the
 *              measurement (see the comment before bench_mpi_weak).
 *   step_profile  the trainer's NLL step rebuilt with a clock between its phases, per step and
 *              rank: compute, the agreement (where a rank waits for the slowest), the loss
 *              sum, the gradient mean, Adam; and the wait that per-step jitter of the compute
 *              alone would cause.
 *   allreduce  tf_dist_mean and plain MPI_Allreduce versus message size (8 B, 32 B, ...,
 *              32 MiB, 64 MiB), and the fit T(n) = alpha + n / beta.
 *
 * Every case prints one line of key=value pairs on rank 0's stdout, starting with case=NAME
 * (allreduce also prints one case=allreduce_point line per message size before it); nothing
 * else goes to stdout.  Diagnostics go to stderr.  Exit status: 0 if every case ran, 1 if one
 * failed (its line then carries error=...), 2 on a usage error.
 *
 * Options:
 *   --model nll_step|dw4   the flow of mpi_weak and step_profile                (nll_step)
 *                          nll_step: bench_core's nll_step flow, D = 64, 8 affine blocks,
 *                            subnets 33 -> 128 -> 128 -> 64 SiLU, log c fed directly,
 *                            batch 1024 per rank;
 *                          dw4: jobs/results/trade/dw4.ini's flow, D = 6 (4 particles in 2-D,
 *                            centre of mass removed), 12 rational-quadratic spline blocks
 *                            (K = 8, B = 5), hidden 128 x 2, embedding 16, ActNorm, batch 512
 *   --reps N               timed repetitions, the median is reported             (7)
 *   --rep-time S           seconds a repetition should last at least             (0.3)
 *   --min-steps N          training steps per repetition at least                (20)
 *   --warmup S             seconds of untimed warm-up                            (0.2)
 *   --calls N              mpi_weak: timed calls of each collective alone        (200)
 *   --budget S             allreduce: seconds per message size and function      (0.2)
 *   --max-mib M            allreduce: largest message in MiB                     (64)
 *   --malloc-default       allreduce, step_profile: keep glibc's malloc settings.  By default
 *                          they turn off mmap'd allocations and heap trimming (mallopt):
 *                          Open MPI's collectives malloc and free message-sized scratch on
 *                          every call (MPI_Reduce_scatter_block's default algorithm for
 *                          large blocks a whole-message buffer on the root), and with glibc's
 *                          defaults a fresh process then maps, faults in and unmaps that
 *                          memory on every call, which on this machine costs more than the
 *                          communication itself (see docs/MPI-scaling.md)
 *   --profile-steps N      step_profile: timed steps                             (200)
 *   --seed N               parameter and data seed                               (1)
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "tradeflow/dist.h"
#include "tradeflow/error.h"
#include "tradeflow/flow.h"
#include "tradeflow/optim.h"
#include "tradeflow/params.h"
#include "tradeflow/rng.h"
#include "tradeflow/tensor.h"
#include "bench_util.h"
#include "tradeflow/train.h"

/* OpenBLAS's thread control (weak, as in bench_core.c: links against any CBLAS). */
void openblas_set_num_threads(int n);
#pragma weak openblas_set_num_threads

#ifdef TF_DOUBLE
#define BENCH_MPI_REAL MPI_DOUBLE
#else
#define BENCH_MPI_REAL MPI_FLOAT
#endif

/* ---- options, output, timing ------------------------------------------------------------- */

typedef struct {
  int reps;
  double rep_time;
  int min_steps;
  double warmup;
  int calls;
  double budget;
  double max_mib;
  int malloc_default;
  int profile_steps;
  uint64_t seed;
  const char *model;
} bench_opts;

static int g_rank, g_size;

static void out_print(const char *name, const bench_out *out) {
  if (g_rank != 0) return;
  printf("case=%s%s\n", name, out->buf);
  fflush(stdout);
}

/* 1 on every rank if `bad` is nonzero on any rank (collective over MPI_COMM_WORLD). */
static int any_bad(int bad) {
  int any = 0;
  bad = bad != 0;
  MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any;
}

static int bcast_int(int v) {
  MPI_Bcast(&v, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return v;
}

/* This process's allowed CPUs (Linux: Cpus_allowed_list of /proc/self/status), "?" if
 * unknown: shows what the launcher's binding did. */
static void cpus_allowed(char *buf, size_t len) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[512];
  snprintf(buf, len, "?");
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, "Cpus_allowed_list:", 18)) {
      char *s = line + 18;
      while (*s == ' ' || *s == '\t') ++s;
      size_t m = strcspn(s, "\n");
      if (m >= len) m = len - 1;
      memcpy(buf, s, m);
      buf[m] = '\0';
      break;
    }
  }
  fclose(f);
}

/* Every rank's allowed CPUs, joined by '|', on rank 0 (collective). */
static void gather_cpus(char *joined, size_t len) {
  enum { W = 32 };
  char mine[W], *all = g_rank == 0 ? malloc((size_t)W * (size_t)g_size) : NULL;
  size_t k = 0;
  cpus_allowed(mine, sizeof mine);
  MPI_Gather(mine, W, MPI_CHAR, all, W, MPI_CHAR, 0, MPI_COMM_WORLD);
  joined[0] = '\0';
  if (!all) return;
  for (int r = 0; r < g_size && k + 2 < len; ++r) {
    int w = snprintf(joined + k, len - k, "%s%.*s", r ? "|" : "", W, all + (size_t)r * W);
    if (w < 0) break;
    k += (size_t)w;
  }
  free(all);
}

static double load1(void) {
  double l = NAN;
  FILE *f = fopen("/proc/loadavg", "r");
  if (f) {
    if (fscanf(f, "%lf", &l) != 1) l = NAN;
    fclose(f);
  }
  return l;
}

/* ---- collectives timed alone ------------------------------------------------------------- */

typedef struct {
  const tf_dist *d;
  tf_real *buf, *work, *out;
  int64_t n;
  double v4[4], *tmp4;
  const void *reg[3];
  size_t reg_len[3];
} coll_state;

typedef int (*coll_fn)(coll_state *s);

static int call_mean(coll_state *s) { return tf_dist_mean(s->d, s->buf, s->n, s->work) != TF_OK; }

static int call_allreduce(coll_state *s) {
  return MPI_Allreduce(s->buf, s->out, (int)s->n, BENCH_MPI_REAL, MPI_SUM, s->d->comm) !=
         MPI_SUCCESS;
}

static int call_agree(coll_state *s) { return tf_dist_agree(s->d, TF_OK) != TF_OK; }

static int call_sum4(coll_state *s) {
  for (int i = 0; i < 4; ++i) s->v4[i] = i + 1.0;
  return tf_dist_sum(s->d, s->v4, 4, s->tmp4) != TF_OK;
}

static int call_check(coll_state *s) {
  static const char *const names[3] = {"parameters", "m", "v"};
  return tf_dist_check_replicas(s->d, 3, s->reg, s->reg_len, names, "bench") != TF_OK;
}

/* `calls` calls of fn (after 3 untimed ones), each started right after an MPI_Barrier; per
 * call the slowest rank's time.  On rank 0 *med and *mn get the median and the minimum over
 * the calls (seconds).  Collective; nonzero (on every rank) if a call failed anywhere. */
static int time_calls(coll_fn fn, coll_state *s, int calls, double *med, double *mn) {
  double *v = malloc((size_t)calls * sizeof *v);
  double *mx = g_rank == 0 ? malloc((size_t)calls * sizeof *mx) : NULL;
  int bad = !v || (g_rank == 0 && !mx);
  if (any_bad(bad)) {
    free(v);
    free(mx);
    return 1;
  }
  for (int i = 0; i < 3; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    bad |= fn(s);
  }
  for (int i = 0; i < calls; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = now_s();
    bad |= fn(s);
    v[i] = now_s() - t0;
  }
  MPI_Reduce(v, mx, calls, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  if (g_rank == 0) {
    double m = mx[0];
    for (int i = 1; i < calls; ++i) m = fmin(m, mx[i]);
    *mn = m;
    *med = median(mx, calls);
  }
  free(v);
  free(mx);
  return any_bad(bad);
}

/* ---- the models -------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  int64_t batch; /* per rank */
  tf_flow_config fc;
} model_spec;

static int model_get(const char *name, uint64_t seed, model_spec *m) {
  memset(m, 0, sizeof *m);
  if (!strcmp(name, "nll_step")) {
    /* bench_core.c flow_setup */
    m->name = "nll_step";
    m->batch = 1024;
    m->fc = tf_flow_defaults(64);
    m->fc.embed_dim = 0;
    m->fc.n_blocks = 8;
    m->fc.hidden = 128;
    m->fc.n_hidden = 2;
    m->fc.clamp = 2.0;
  } else if (!strcmp(name, "dw4")) {
    /* jobs/results/trade/dw4.ini with the schema defaults of src/cli/schema.c */
    m->name = "dw4";
    m->batch = 512;
    m->fc = tf_flow_defaults(6);
    m->fc.coupling = TF_COUPLING_SPLINE;
    m->fc.n_blocks = 12;
    m->fc.hidden = 128;
    m->fc.n_hidden = 2;
    m->fc.embed_dim = 16;
    m->fc.spline_bins = 8;
    m->fc.spline_bound = 5;
    m->fc.actnorm = 1;
  } else {
    return 1;
  }
  m->fc.conditional = 1;
  m->fc.seed = seed;
  return 0;
}

/* ---- mpi_weak ----------------------------------------------------------------------------
 * With P > 1 ranks every repetition round times three kinds of repetition, in an order that
 * rotates from round to round, so that slow drifts of the machine's speed (a shared virtual
 * machine) hit all three alike:
 *   dp    all ranks train one model together (the measurement);
 *   one   one rank trains a model of its own through the serial group while the others sleep
 *         (not spin) in a non-blocking barrier: the 1-rank step time, taken on rank r % P in
 *         round r, i.e. on every core in turn;
 *   solo  all ranks train models of their own through the serial group at once: the step
 *         time when the machine is shared but nothing is communicated.
 * one / dp per round, median over the rounds, is the paired efficiency; one / solo is what
 * sharing the machine alone costs, solo / dp what the communication (and waiting) costs. */

static tf_trainer *make_trainer(const bench_opts *o, const model_spec *m, const tf_dist *d,
                                int64_t steps_per_run, tf_model *model,
                                const tf_dataset *data) {
  tf_train_config tc = tf_train_defaults();
  tc.steps = INT64_C(1) << 40; /* never reached: every run stops after steps_per_run */
  tc.max_steps_per_run = steps_per_run;
  tc.batch = m->batch;
  tc.val_fraction = 0;
  tc.val_every = 0;   /* "only at the end", and a run ended by max_steps_per_run skips it */
  tc.log_every = 0;
  tc.ckpt_every = 0;
  tc.checkpoint = NULL;
  tc.log = NULL;
  tc.check_every = 0; /* replicas are still compared once at the end of every run */
  tc.lr.kind = TF_LR_CONSTANT;
  tc.lr.lr = 1e-4;
  tc.lr.warmup = 0;
  tc.seed = o->seed;
  tc.dist = d;
  return tf_trainer_create(&tc, model, data);
}

typedef struct {
  tf_model *model;
  tf_params *p;   /* the model's */
  tf_flow *flow;  /* the model's */
} model_inst;

static int model_make(const model_spec *m, model_inst *mi) {
  mi->model = tf_flow_model_create(&m->fc);
  mi->p = mi->model ? tf_model_params(mi->model) : NULL;
  mi->flow = tf_flow_of(mi->model);
  return !mi->model || tf_model_init(mi->model);
}

static void model_free(model_inst *mi) {
  tf_model_destroy(mi->model);
  mi->model = NULL;
}

/* A barrier in which this rank sleeps instead of polling (so that its core is idle). */
static void sleepy_barrier(void) {
  MPI_Request req;
  int done = 0;
  const struct timespec nap = {0, 100000}; /* 0.1 ms */
  MPI_Ibarrier(MPI_COMM_WORLD, &req);
  for (;;) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) break;
    nanosleep(&nap, NULL);
  }
}

/* One timed tf_trainer_run (k steps): per-step ms in *t, per-step comm ms in *c. */
static int timed_run(tf_trainer *tr, int k, double *t, double *c) {
  const double c0 = tf_trainer_comm_seconds(tr), t0 = now_s();
  const int rc = tf_trainer_run(tr);
  const double t1 = now_s(), c1 = tf_trainer_comm_seconds(tr);
  *t = 1e3 * (t1 - t0) / k;
  *c = 1e3 * (c1 - c0) / k;
  return rc != TF_OK;
}

/* "a|b|c" of up to 8 values */
static void join_ms(char *buf, size_t len, const double *v, int n) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && i < 8 && k + 16 < len; ++i) {
    int w = snprintf(buf + k, len - k, "%s%.4f", i ? "|" : "", v[i]);
    if (w < 0) break;
    k += (size_t)w;
  }
}

enum { K_DP = 0, K_ONE = 1, K_SOLO = 2, N_KINDS = 3 };

static int bench_mpi_weak(const bench_opts *o, bench_out *out) {
  model_spec m;
  tf_dist d = tf_dist_serial(), serial = tf_dist_serial();
  model_inst mdp = {0}, mown = {0};
  tf_trainer *tr = NULL, *trs = NULL;
  double *x = NULL, *loc = NULL, *all = NULL;
  coll_state cs;
  int rc = 1, bad = 0, k = 0;
  const int R = o->reps, P = g_size;
  char cpus[256];
  const double l1 = g_rank == 0 ? load1() : NAN;
  memset(&cs, 0, sizeof cs);

  if (model_get(o->model, o->seed, &m)) {
    out_add(out, "error", "unknown_model");
    return 1;
  }
  out_add(out, "model", "%s", m.name);
  out_add(out, "ranks", "%d", P);
  out_add(out, "batch", "%lld", (long long)m.batch);
  out_add(out, "global_batch", "%lld", (long long)(m.batch * P));
  if (tf_dist_from_comm(MPI_COMM_WORLD, &d) != TF_OK) bad = 1;

  /* the data: N(0, I) rows, the same on every rank (each replica holds the whole set) */
  const int64_t D = m.fc.dim;
  int64_t nrows = 65536;
  if (nrows < 4 * m.batch * P) nrows = 4 * m.batch * P;
  if (!bad && !(x = malloc((size_t)(nrows * D) * sizeof *x))) bad = 1;
  if (!bad) {
    tf_rng r;
    tf_rng_init(&r, o->seed, 0, TF_RNG_USER, 0);
    tf_rng_fill_normal_d(&r, x, nrows * D);
  }
  tf_dataset data = {nrows, D, x, NULL, 1.0};
  /* the replicated model (identical on every rank: deterministic in the seed), and with
   * several ranks a second, rank-private one for the one and solo repetitions */
  if (!bad && model_make(&m, &mdp)) bad = 1;
  if (!bad && P > 1 && model_make(&m, &mown)) bad = 1;
  loc = malloc((size_t)(4 * R) * sizeof *loc);
  if (g_rank == 0) all = malloc((size_t)(4 * R * P) * sizeof *all);
  if (!loc || (g_rank == 0 && !all)) bad = 1;
  if (any_bad(bad)) {
    if (g_rank == 0) fprintf(stderr, "bench_mpi: mpi_weak: setup failed: %s\n", tf_errmsg());
    out_add(out, "error", "setup_failed");
    goto done;
  }
  const int64_t np = tf_params_size(mdp.p);

  /* warm-up with short runs, then the steps per repetition from its pace (rank 0 decides) */
  {
    const int64_t wsteps = 3;
    int64_t done_steps = 0;
    tr = make_trainer(o, &m, &d, wsteps, mdp.model, &data);
    if (any_bad(!tr)) {
      if (g_rank == 0) fprintf(stderr, "bench_mpi: mpi_weak: trainer: %s\n", tf_errmsg());
      out_add(out, "error", "trainer_failed");
      goto done;
    }
    /* the first run includes the ActNorm data initialisation: not part of the pace */
    if (any_bad(tf_trainer_run(tr) != TF_OK)) goto run_failed;
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = now_s();
    for (;;) {
      if (any_bad(tf_trainer_run(tr) != TF_OK)) goto run_failed;
      done_steps += wsteps;
      if (!bcast_int(done_steps < 2 * wsteps || now_s() - t0 < o->warmup)) break;
    }
    const double per_step = (now_s() - t0) / (double)done_steps;
    k = o->min_steps;
    if (per_step > 0 && o->rep_time / per_step > k) k = (int)ceil(o->rep_time / per_step);
    k = bcast_int(k);
    tf_trainer_destroy(tr);
    tr = NULL;
  }

  /* the timed rounds: each repetition is one tf_trainer_run of k steps */
  tr = make_trainer(o, &m, &d, k, mdp.model, &data);
  if (P > 1) trs = make_trainer(o, &m, &serial, k, mown.model, &data);
  if (any_bad(!tr || (P > 1 && !trs))) {
    out_add(out, "error", "trainer_failed");
    goto done;
  }
  /* untimed: warm both trainers */
  if (any_bad(tf_trainer_run(tr) != TF_OK)) goto run_failed;
  if (P > 1 && any_bad(tf_trainer_run(trs) != TF_OK)) goto run_failed;
  /* loc[0..R) dp step, [R..2R) dp comm, [2R..3R) one (NaN unless this rank ran it),
   * [3R..4R) solo */
  for (int i = 0; i < 4 * R; ++i) loc[i] = NAN;
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < N_KINDS; ++j) {
      const int kind = (j + r) % N_KINDS;
      double t, c;
      int fail = 0;
      if (P == 1 && kind != K_DP) continue;
      if (kind == K_DP) {
        MPI_Barrier(MPI_COMM_WORLD);
        fail = timed_run(tr, k, &loc[r], &loc[R + r]);
      } else if (kind == K_SOLO) {
        MPI_Barrier(MPI_COMM_WORLD);
        fail = timed_run(trs, k, &loc[3 * R + r], &c);
      } else {
        MPI_Barrier(MPI_COMM_WORLD);
        if (g_rank == r % P) {
          fail = timed_run(trs, k, &t, &c);
          loc[2 * R + r] = t;
        }
        sleepy_barrier(); /* the others sleep here while the one rank trains */
      }
      if (any_bad(fail)) goto run_failed;
    }
  }
  MPI_Gather(loc, 4 * R, MPI_DOUBLE, all, 4 * R, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  const double last_loss = tf_trainer_last_loss(tr);
  const long long skipped = (long long)tf_trainer_skipped(tr);

  /* the collectives alone, on gradient-sized buffers */
  double mean_med = NAN, mean_min = NAN, ar_med = NAN, ar_min = NAN, ag_med = NAN, ag_min = NAN;
  double s4_med = NAN, s4_min = NAN, ck_med = NAN, ck_min = NAN;
  if (P > 1) {
    tf_real *vals = NULL;
    double *mom = NULL;
    cs.d = &d;
    cs.n = np;
    cs.buf = malloc((size_t)np * sizeof *cs.buf);
    cs.out = malloc((size_t)np * sizeof *cs.out);
    cs.work = malloc((size_t)tf_dist_mean_work(&d, np) * sizeof *cs.work);
    cs.tmp4 = malloc((size_t)(4 * P) * sizeof *cs.tmp4);
    vals = malloc((size_t)np * sizeof *vals);
    mom = calloc((size_t)(2 * np), sizeof *mom);
    if (any_bad(!cs.buf || !cs.out || !cs.work || !cs.tmp4 || !vals || !mom)) {
      out_add(out, "error", "out_of_memory");
      free(vals);
      free(mom);
      goto done;
    }
    memcpy(vals, tf_params_values(mdp.p), (size_t)np * sizeof *vals);
    memcpy(cs.buf, tf_params_values(mdp.p), (size_t)np * sizeof *cs.buf);
    cs.reg[0] = vals;
    cs.reg[1] = mom;
    cs.reg[2] = mom + np;
    cs.reg_len[0] = (size_t)np * sizeof *vals;
    cs.reg_len[1] = cs.reg_len[2] = (size_t)np * sizeof *mom;
    bad = time_calls(call_mean, &cs, o->calls, &mean_med, &mean_min);
    bad = bad || time_calls(call_allreduce, &cs, o->calls, &ar_med, &ar_min);
    bad = bad || time_calls(call_agree, &cs, o->calls, &ag_med, &ag_min);
    bad = bad || time_calls(call_sum4, &cs, o->calls, &s4_med, &s4_min);
    bad = bad || time_calls(call_check, &cs, o->calls < 50 ? o->calls : 50, &ck_med, &ck_min);
    free(vals);
    free(mom);
    if (bad) {
      out_add(out, "error", "collective_failed");
      goto done;
    }
  }
  gather_cpus(cpus, sizeof cpus);

  if (g_rank == 0) {
    /* rank q's value of series s in round r */
#define AT(q, s, r) all[(size_t)(q) * 4 * R + (size_t)(s) * R + (size_t)(r)]
    const int V = R > P ? R : P;
    double *v = malloc((size_t)V * sizeof *v), *w = malloc((size_t)V * sizeof *w);
    double *cr = malloc((size_t)P * sizeof *cr), *br = malloc((size_t)P * sizeof *br);
    double *one_dp = malloc((size_t)R * sizeof *one_dp), *one_solo = malloc((size_t)R * sizeof *one_solo);
    double *dpr = malloc((size_t)R * sizeof *dpr), *solor = malloc((size_t)R * sizeof *solor);
    double *oner = malloc((size_t)R * sizeof *oner);
    char list[160];
    if (!v || !w || !cr || !br || !one_dp || !one_solo || !dpr || !solor || !oner) {
      out_add(out, "error", "out_of_memory");
    } else {
      double step_min = INFINITY, step_max = 0;
      for (int r = 0; r < R; ++r) {
        double mx = 0, ms = 0;
        for (int q = 0; q < P; ++q) mx = fmax(mx, AT(q, 0, r)), ms = fmax(ms, AT(q, 3, r));
        dpr[r] = mx;
        solor[r] = ms;
        oner[r] = AT(r % P, 2, r);
        step_min = fmin(step_min, mx);
        step_max = fmax(step_max, mx);
      }
      for (int r = 0; r < R; ++r) v[r] = dpr[r];
      const double step = median(v, R);
      double comm = 0, comm_lo = INFINITY, comm_hi = 0, busy_lo = INFINITY, busy_hi = 0;
      for (int q = 0; q < P; ++q) {
        for (int r = 0; r < R; ++r) v[r] = AT(q, 1, r);
        cr[q] = median(v, R);
        for (int r = 0; r < R; ++r) v[r] = AT(q, 0, r) - AT(q, 1, r);
        br[q] = median(v, R);
        comm += cr[q] / P;
        comm_lo = fmin(comm_lo, cr[q]);
        comm_hi = fmax(comm_hi, cr[q]);
        busy_lo = fmin(busy_lo, br[q]);
        busy_hi = fmax(busy_hi, br[q]);
      }
      out_add(out, "ours_ms", "%.4f", step);
      out_add(out, "min_ms", "%.4f", step_min);
      out_add(out, "max_ms", "%.4f", step_max);
      out_add(out, "steps", "%d", k);
      out_add(out, "reps", "%d", R);
      out_add(out, "comm_ms", "%.4f", comm);
      out_add(out, "comm_ms_min", "%.4f", comm_lo);
      out_add(out, "comm_ms_max", "%.4f", comm_hi);
      out_add(out, "allreduce_share", "%.4f", comm / step);
      join_ms(list, sizeof list, cr, P);
      out_add(out, "comm_ms_ranks", "%s", list);
      join_ms(list, sizeof list, br, P);
      out_add(out, "compute_ms_ranks", "%s", list);
      out_add(out, "imbalance_ms", "%.4f", busy_hi - busy_lo);
      if (P > 1) {
        /* one: per round the rank that ran it; solo: the slowest rank per round */
        for (int r = 0; r < R; ++r) v[r] = oner[r];
        const double one = median(v, R);
        for (int r = 0; r < R; ++r) v[r] = solor[r];
        const double solo = median(v, R);
        for (int r = 0; r < R; ++r) one_dp[r] = oner[r] / dpr[r], one_solo[r] = oner[r] / solor[r];
        out_add(out, "one_ms", "%.4f", one);
        for (int q = 0; q < P; ++q) { /* per core: its own rounds */
          int n = 0;
          for (int r = q; r < R; r += P) w[n++] = oner[r];
          br[q] = n ? median(w, n) : NAN;
        }
        join_ms(list, sizeof list, br, P);
        out_add(out, "one_ms_ranks", "%s", list);
        out_add(out, "solo_ms", "%.4f", solo);
        for (int q = 0; q < P; ++q) {
          for (int r = 0; r < R; ++r) v[r] = AT(q, 3, r);
          br[q] = median(v, R);
        }
        join_ms(list, sizeof list, br, P);
        out_add(out, "solo_ms_ranks", "%s", list);
        out_add(out, "paired_efficiency", "%.4f", median(one_dp, R));
        out_add(out, "solo_efficiency", "%.4f", median(one_solo, R));
        for (int r = 0; r < R; ++r) v[r] = solor[r] / dpr[r];
        out_add(out, "comm_efficiency", "%.4f", median(v, R));
        out_add(out, "mean_alone_ms", "%.4f", 1e3 * mean_med);
        out_add(out, "mean_alone_min_ms", "%.4f", 1e3 * mean_min);
        out_add(out, "allreduce_alone_ms", "%.4f", 1e3 * ar_med);
        out_add(out, "agree_us", "%.2f", 1e6 * ag_med);
        out_add(out, "sum4_us", "%.2f", 1e6 * s4_med);
        out_add(out, "endcheck_ms", "%.4f", 1e3 * ck_med);
        /* the collectives' time beyond their own cost alone: waiting for the slower rank,
         * and any slowdown of the collectives inside a step */
        out_add(out, "wait_ms", "%.4f", comm - 1e3 * (mean_med + ag_med + s4_med));
      }
      out_add(out, "grad_bytes", "%lld", (long long)(np * (int64_t)sizeof(tf_real)));
      out_add(out, "grad_mb", "%.4f", (double)np * (double)sizeof(tf_real) / 1e6);
      out_add(out, "params", "%lld", (long long)np);
      out_add(out, "dtype", "%s", TF_REAL_NAME);
      out_add(out, "loss", "%.6g", last_loss);
      out_add(out, "skipped", "%lld", skipped);
      out_add(out, "cpus", "%s", cpus);
      out_add(out, "load1", "%.2f", l1);
    }
#undef AT
    free(v);
    free(w);
    free(cr);
    free(br);
    free(one_dp);
    free(one_solo);
    free(dpr);
    free(solor);
    free(oner);
  }
  rc = 0;
  goto done;
run_failed:
  if (g_rank == 0) fprintf(stderr, "bench_mpi: mpi_weak: training failed: %s\n", tf_errmsg());
  out_add(out, "error", "step_failed");
done:
  free(cs.buf);
  free(cs.out);
  free(cs.work);
  free(cs.tmp4);
  free(loc);
  free(all);
  tf_trainer_destroy(tr);
  tf_trainer_destroy(trs);
  model_free(&mdp);
  model_free(&mown);
  free(x);
  return rc;
}

/* Unless --malloc-default: every allocation from the heap, which never shrinks, so that the
 * scratch Open MPI's collectives malloc and free on every call is reused without new page
 * faults (a process setting of this benchmark; the library and the CLI do not make it). */
static void malloc_setting(const bench_opts *o, bench_out *out) {
  if (!o->malloc_default) {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, INT32_MAX);
  }
  out_add(out, "malloc", "%s", o->malloc_default ? "default" : "no_mmap_no_trim");
}

/* ---- step_profile: where a data-parallel step's time goes ---------------------------------
 * The trainer's NLL step rebuilt here with a clock between its phases (trainer.c train_step:
 * batch + forward + backward, then tf_dist_agree, tf_dist_sum of 4 doubles, tf_dist_mean of
 * the gradient, Adam), per step and per rank.  The first collective (the agreement) absorbs
 * the wait for the slowest rank; if that wait is per-step jitter of the compute, it equals
 * the mean of max_q compute_q - compute_r over steps and ranks (predicted_wait_ms).
 * Without the trainer's allocation history, this process's heap would make Open MPI's
 * per-call scratch page-fault on every step (5 ms per gradient mean for dw4 here, where the
 * trainer sees under 1 ms), so the malloc setting of the allreduce case applies here too. */

enum { PH_COMPUTE = 0, PH_AGREE, PH_SUM, PH_MEAN, PH_OPTIM, N_PH };

static int bench_step_profile(const bench_opts *o, bench_out *out) {
  model_spec m;
  model_inst mi = {0};
  tf_dist d;
  tf_optim *opt = NULL;
  tf_ctx *ctx = NULL;
  tf_tensor *x = NULL, *c = NULL;
  tf_real *work = NULL;
  double *pool = NULL, *ph = NULL, *all = NULL, tmp4[4 * 64];
  const int P = g_size, N = o->profile_steps, NB = 8;
  int rc = 1, bad = 0;
  if (model_get(o->model, o->seed, &m)) {
    out_add(out, "error", "unknown_model");
    return 1;
  }
  out_add(out, "model", "%s", m.name);
  out_add(out, "ranks", "%d", P);
  malloc_setting(o, out);
  if (P > 64 || tf_dist_from_comm(MPI_COMM_WORLD, &d) != TF_OK) {
    out_add(out, "error", "bad_communicator");
    return 1;
  }
  const int64_t B = m.batch, D = m.fc.dim;
  tf_optim_config oc = tf_train_defaults().optim; /* Adam, clip 10: the trainer's */
  if (model_make(&m, &mi)) bad = 1;
  const int64_t np = bad ? 0 : tf_params_size(mi.p);
  if (!bad) {
    opt = tf_optim_create(&oc, np);
    ctx = tf_ctx_create(0);
    x = tf_tensor_create(2, (int64_t[]){B, D});
    c = tf_tensor_create(2, (int64_t[]){B, 1});
    work = malloc((size_t)(tf_dist_mean_work(&d, np) + 1) * sizeof *work);
    pool = malloc((size_t)(NB * B * D) * sizeof *pool);
    ph = malloc((size_t)(N_PH * N) * sizeof *ph);
    if (g_rank == 0) all = malloc((size_t)(N_PH * N * P) * sizeof *all);
    bad = !opt || !ctx || !x || !c || !work || !pool || !ph || (g_rank == 0 && !all);
  }
  if (any_bad(bad)) {
    out_add(out, "error", "setup_failed");
    goto done;
  }
  { /* this rank's batches: N(0, I), c = 1 */
    tf_rng r;
    tf_rng_init(&r, o->seed, (uint32_t)g_rank, TF_RNG_USER, 1);
    tf_rng_fill_normal_d(&r, pool, NB * B * D);
    for (int64_t i = 0; i < B; ++i) c->data[i] = 1;
  }
  if (m.fc.actnorm) {
    const double *src = pool;
    for (int64_t i = 0; i < B * D; ++i) x->data[i] = (tf_real)src[i];
    tf_ctx_reset(ctx);
    bad = tf_flow_data_init(mi.flow, ctx, x, c) != TF_OK;
    if (any_bad(bad)) {
      out_add(out, "error", "data_init_failed");
      goto done;
    }
  }
  for (int s = -10; s < N; ++s) { /* 10 untimed steps first */
    double t[N_PH + 1], v4[4];
    t[0] = now_s();
    const double *src = pool + (size_t)(((s + 10) % NB) * B * D);
    for (int64_t i = 0; i < B * D; ++i) x->data[i] = (tf_real)src[i];
    tf_ctx_reset(ctx);
    tf_tensor *loss = tf_scale(ctx, tf_mean_all(ctx, tf_flow_log_prob(mi.flow, ctx, x, c)), -1);
    int st = (!loss || tf_params_backward(mi.p, ctx, loss) != TF_OK) ? TF_EINVAL : TF_OK;
    t[1] = now_s();
    st = tf_dist_agree(&d, st);
    t[2] = now_s();
    if (st != TF_OK) {
      bad = 1;
      break;
    }
    v4[0] = loss->data[0];
    v4[1] = v4[2] = NAN;
    v4[3] = 0;
    bad |= tf_dist_sum(&d, v4, 4, tmp4) != TF_OK;
    t[3] = now_s();
    bad |= tf_dist_mean(&d, tf_params_grads(mi.p), np, work) != TF_OK;
    t[4] = now_s();
    bad |= tf_optim_step(opt, tf_params_values(mi.p), tf_params_grads(mi.p), 1e-4, NULL) ==
           TF_EINVAL;
    t[5] = now_s();
    if (s >= 0)
      for (int k = 0; k < N_PH; ++k) ph[k * N + s] = 1e3 * (t[k + 1] - t[k]);
  }
  if (any_bad(bad)) {
    out_add(out, "error", "step_failed");
    goto done;
  }
  MPI_Gather(ph, N_PH * N, MPI_DOUBLE, all, N_PH * N, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (g_rank == 0) {
#define PH(q, k, s) all[(size_t)(q) * N_PH * N + (size_t)(k) * N + (size_t)(s)]
    double *v = malloc((size_t)(N > P ? N : P) * sizeof *v), med[N_PH], cm[64], mean_wait = 0;
    double pred = 0, sd = 0, tot_mean = 0;
    char list[160];
    if (!v) {
      out_add(out, "error", "out_of_memory");
      goto done;
    }
    for (int k = 0; k < N_PH; ++k) { /* medians over steps, mean over ranks */
      med[k] = 0;
      for (int q = 0; q < P; ++q) {
        for (int s = 0; s < N; ++s) v[s] = PH(q, k, s);
        med[k] += median(v, N) / P;
      }
    }
    for (int q = 0; q < P; ++q) {
      double mu = 0, var = 0;
      for (int s = 0; s < N; ++s) v[s] = PH(q, PH_COMPUTE, s), mu += v[s] / N;
      for (int s = 0; s < N; ++s) var += (v[s] - mu) * (v[s] - mu) / (N > 1 ? N - 1 : 1);
      sd += sqrt(var) / P;
      cm[q] = mu;
      for (int s = 0; s < N; ++s) mean_wait += PH(q, PH_AGREE, s) / ((double)N * P);
    }
    for (int s = 0; s < N; ++s) {
      double mx = 0, tmax = 0;
      for (int q = 0; q < P; ++q) mx = fmax(mx, PH(q, PH_COMPUTE, s));
      for (int q = 0; q < P; ++q) {
        double tq = 0;
        for (int k = 0; k < N_PH; ++k) tq += PH(q, k, s);
        tmax = fmax(tmax, tq);
        pred += (mx - PH(q, PH_COMPUTE, s)) / ((double)N * P);
      }
      tot_mean += tmax / N;
    }
    out_add(out, "steps", "%d", N);
    out_add(out, "step_ms_mean", "%.4f", tot_mean);
    out_add(out, "compute_ms", "%.4f", med[PH_COMPUTE]);
    out_add(out, "compute_sd_ms", "%.4f", sd);
    join_ms(list, sizeof list, cm, P);
    out_add(out, "compute_mean_ms_ranks", "%s", list);
    out_add(out, "agree_ms_mean", "%.4f", mean_wait);
    out_add(out, "agree_ms", "%.4f", med[PH_AGREE]);
    out_add(out, "predicted_wait_ms", "%.4f", pred);
    out_add(out, "sum4_ms", "%.4f", med[PH_SUM]);
    out_add(out, "mean_ms", "%.4f", med[PH_MEAN]);
    out_add(out, "optim_ms", "%.4f", med[PH_OPTIM]);
    out_add(out, "grad_mb", "%.4f", (double)np * (double)sizeof(tf_real) / 1e6);
    free(v);
#undef PH
  }
  rc = 0;
done:
  tf_tensor_destroy(x);
  tf_tensor_destroy(c);
  tf_ctx_destroy(ctx);
  tf_optim_destroy(opt);
  model_free(&mi);
  free(work);
  free(pool);
  free(ph);
  free(all);
  return rc;
}

/* ---- allreduce: time versus message size, alpha-beta fit -------------------------------- */

/* Weighted least squares y ~ a + b x with weights w (NULL: 1) over [0, n). */
static void fit_line(const double *x, const double *y, const double *w, int n, double *a,
                     double *b) {
  double S = 0, Sx = 0, Sy = 0, Sxx = 0, Sxy = 0;
  for (int i = 0; i < n; ++i) {
    const double wi = w ? w[i] : 1.0;
    S += wi;
    Sx += wi * x[i];
    Sy += wi * y[i];
    Sxx += wi * x[i] * x[i];
    Sxy += wi * x[i] * y[i];
  }
  const double det = S * Sxx - Sx * Sx;
  *b = det != 0 ? (S * Sxy - Sx * Sy) / det : NAN;
  *a = (Sy - *b * Sx) / S;
}

enum { MAX_SIZES = 32 };

/* alpha (us) from sizes <= 2 KiB, beta (GB/s) from sizes >= 512 KiB (each a least-squares
 * line over its range), grad_beta from 128 KiB to 2 MiB (the gradients' sizes), and a
 * whole-range fit with relative residuals (weights 1/T^2). */
static void fit_alpha_beta(bench_out *out, const char *prefix, const double *bytes,
                           const double *us, int n) {
  double xs[MAX_SIZES], ys[MAX_SIZES], w[MAX_SIZES], a, b;
  char key[64];
  int m = 0;
  for (int i = 0; i < n; ++i)
    if (bytes[i] <= 2048) xs[m] = bytes[i], ys[m] = us[i], ++m;
  fit_line(xs, ys, NULL, m, &a, &b);
  snprintf(key, sizeof key, "%salpha_us", prefix);
  out_add(out, key, "%.3f", a);
  m = 0;
  for (int i = 0; i < n; ++i)
    if (bytes[i] >= 524288) xs[m] = bytes[i], ys[m] = us[i], ++m;
  if (m >= 2) {
    fit_line(xs, ys, NULL, m, &a, &b);
    snprintf(key, sizeof key, "%sbeta_gbs", prefix);
    out_add(out, key, "%.3f", 1e-3 / b); /* b in us per byte */
    snprintf(key, sizeof key, "%sbeta_intercept_us", prefix);
    out_add(out, key, "%.1f", a);
  }
  /* gradients of the flows here are 0.9 to 2 MB: beta over the sizes around them */
  m = 0;
  for (int i = 0; i < n; ++i)
    if (bytes[i] >= 131072 && bytes[i] <= 2097152) xs[m] = bytes[i], ys[m] = us[i], ++m;
  if (m >= 2) {
    fit_line(xs, ys, NULL, m, &a, &b);
    snprintf(key, sizeof key, "%sgrad_beta_gbs", prefix);
    out_add(out, key, "%.3f", 1e-3 / b);
    snprintf(key, sizeof key, "%sgrad_beta_intercept_us", prefix);
    out_add(out, key, "%.1f", a);
  }
  for (int i = 0; i < n; ++i) w[i] = 1.0 / (us[i] * us[i]);
  fit_line(bytes, us, w, n, &a, &b);
  snprintf(key, sizeof key, "%srel_alpha_us", prefix);
  out_add(out, key, "%.3f", a);
  snprintf(key, sizeof key, "%srel_beta_gbs", prefix);
  out_add(out, key, "%.3f", 1e-3 / b);
}

static int bench_allreduce(const bench_opts *o, bench_out *out) {
  tf_dist d;
  coll_state cs;
  double bytes[MAX_SIZES], mean_us[MAX_SIZES], ar_us[MAX_SIZES];
  int ns = 0, rc = 1;
  memset(&cs, 0, sizeof cs);
  out_add(out, "ranks", "%d", g_size);
  malloc_setting(o, out);
  if (g_size < 2) {
    if (g_rank == 0)
      fprintf(stderr, "bench_mpi: allreduce needs at least 2 ranks (mpirun -np 2 ...)\n");
    out_add(out, "error", "needs_several_ranks");
    return 1;
  }
  if (tf_dist_from_comm(MPI_COMM_WORLD, &d) != TF_OK) {
    out_add(out, "error", "no_communicator");
    return 1;
  }
  /* 8 B * 4^k up to the largest size, plus the largest size itself (64 MiB = 2^26 B is no
   * 8 * 4^k) */
  const double maxb = o->max_mib * 1048576.0;
  for (double b = 8; b <= maxb && ns < MAX_SIZES - 1; b *= 4) bytes[ns++] = b;
  if (ns == 0 || bytes[ns - 1] < maxb) bytes[ns++] = maxb;
  const int64_t nmax = (int64_t)(maxb / sizeof(tf_real));
  cs.d = &d;
  cs.buf = malloc((size_t)nmax * sizeof *cs.buf);
  cs.out = malloc((size_t)nmax * sizeof *cs.out);
  cs.work = malloc((size_t)tf_dist_mean_work(&d, nmax) * sizeof *cs.work);
  if (any_bad(!cs.buf || !cs.out || !cs.work)) {
    out_add(out, "error", "out_of_memory");
    goto done;
  }
  for (int64_t i = 0; i < nmax; ++i) cs.buf[i] = (tf_real)(1.0 + (double)(i % 7));
  for (int s = 0; s < ns; ++s) {
    double med, mn, med2, mn2, probe = 0, dummy;
    cs.n = (int64_t)(bytes[s] / sizeof(tf_real));
    if (cs.n < 1) cs.n = 1;
    /* calls from a 3-call probe: about o->budget seconds per function, 10 to 2000 calls */
    if (time_calls(call_mean, &cs, 3, &probe, &dummy)) goto failed;
    int calls = 0;
    if (g_rank == 0) {
      const double c = probe > 0 ? o->budget / (probe + 5e-6) : 2000; /* + barrier */
      calls = c < 10 ? 10 : c > 2000 ? 2000 : (int)c;
    }
    calls = bcast_int(calls);
    if (time_calls(call_mean, &cs, calls, &med, &mn)) goto failed;
    if (time_calls(call_allreduce, &cs, calls, &med2, &mn2)) goto failed;
    if (g_rank == 0) {
      bench_out pt = {"", 0};
      mean_us[s] = 1e6 * med;
      ar_us[s] = 1e6 * med2;
      out_add(&pt, "ranks", "%d", g_size);
      out_add(&pt, "bytes", "%.0f", bytes[s]);
      out_add(&pt, "count", "%lld", (long long)cs.n);
      out_add(&pt, "mean_us", "%.3f", 1e6 * med);
      out_add(&pt, "mean_min_us", "%.3f", 1e6 * mn);
      out_add(&pt, "allreduce_us", "%.3f", 1e6 * med2);
      out_add(&pt, "allreduce_min_us", "%.3f", 1e6 * mn2);
      out_add(&pt, "mean_gbs", "%.3f", bytes[s] / med / 1e9);
      out_add(&pt, "allreduce_gbs", "%.3f", bytes[s] / med2 / 1e9);
      out_add(&pt, "calls", "%d", calls);
      out_print("allreduce_point", &pt);
    }
  }
  if (g_rank == 0) {
    out_add(out, "sizes", "%.0f-%.0f", bytes[0], bytes[ns - 1]);
    out_add(out, "alpha_sizes", "8-2048");
    int nb = 0, ng = 0; /* the fits need two sizes in their ranges */
    for (int s = 0; s < ns; ++s) {
      nb += bytes[s] >= 524288;
      ng += bytes[s] >= 131072 && bytes[s] <= 2097152;
    }
    if (nb >= 2) out_add(out, "beta_sizes", "524288-%.0f", bytes[ns - 1]);
    if (ng >= 2) out_add(out, "grad_beta_sizes", "131072-2097152");
    fit_alpha_beta(out, "", bytes, mean_us, ns);
    fit_alpha_beta(out, "allreduce_", bytes, ar_us, ns);
    out_add(out, "dtype", "%s", TF_REAL_NAME);
  }
  rc = 0;
  goto done;
failed:
  if (g_rank == 0) fprintf(stderr, "bench_mpi: allreduce: a collective failed: %s\n", tf_errmsg());
  out_add(out, "error", "collective_failed");
done:
  free(cs.buf);
  free(cs.out);
  free(cs.work);
  return rc;
}

/* ---- the case table ---------------------------------------------------------------------- */

typedef struct {
  const char *name;
  const char *kind;
  const char *desc;
  int (*run)(const bench_opts *o, bench_out *out);
} bench_case;

static const bench_case CASES[] = {
    {"mpi_weak", "bench",
     "weak scaling of trainer steps (tf_trainer_run over MPI_COMM_WORLD), batch per rank fixed "
     "(--model nll_step: D=64 affine flow, batch 1024; --model dw4: D=6 spline flow, batch 512)",
     bench_mpi_weak},
    {"step_profile", "ref",
     "the trainer's NLL step rebuilt with a clock per phase (compute, agreement = wait for the "
     "slowest rank, loss sum, gradient mean, Adam), per step and rank (--model as mpi_weak)",
     bench_step_profile},
    {"allreduce", "ref",
     "tf_dist_mean and MPI_Allreduce vs message size 8 B..64 MiB, fit T = alpha + n / beta",
     bench_allreduce},
};
enum { N_CASES = sizeof CASES / sizeof CASES[0] };

static void usage(FILE *f) {
  fprintf(f, "usage: bench_mpi --list | mpirun -np P bench_mpi [--model nll_step|dw4]"
             " [--reps N] [--rep-time S] [--min-steps N] [--warmup S] [--calls N]"
             " [--budget S] [--max-mib M] [--malloc-default] [--profile-steps N] [--seed N]"
             " NAME...\n");
}

int main(int argc, char **argv) {
  bench_opts o = {7, 0.3, 20, 0.2, 200, 0.2, 64, 0, 200, 1, "nll_step"};
  const bench_case *todo[16];
  int n_todo = 0, failed = 0, i, c;
  for (i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
    if (!strcmp(a, "--list")) {
      for (c = 0; c < N_CASES; ++c) printf("%s %s %s\n", CASES[c].name, CASES[c].kind, CASES[c].desc);
      return 0;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--model") && v) {
      o.model = v, ++i;
    } else if (!strcmp(a, "--reps") && v) {
      o.reps = atoi(v), ++i;
    } else if (!strcmp(a, "--rep-time") && v) {
      o.rep_time = atof(v), ++i;
    } else if (!strcmp(a, "--min-steps") && v) {
      o.min_steps = atoi(v), ++i;
    } else if (!strcmp(a, "--warmup") && v) {
      o.warmup = atof(v), ++i;
    } else if (!strcmp(a, "--calls") && v) {
      o.calls = atoi(v), ++i;
    } else if (!strcmp(a, "--budget") && v) {
      o.budget = atof(v), ++i;
    } else if (!strcmp(a, "--profile-steps") && v) {
      o.profile_steps = atoi(v), ++i;
    } else if (!strcmp(a, "--malloc-default")) {
      o.malloc_default = 1;
    } else if (!strcmp(a, "--max-mib") && v) {
      o.max_mib = atof(v), ++i;
    } else if (!strcmp(a, "--seed") && v) {
      o.seed = strtoull(v, NULL, 10), ++i;
    } else if (a[0] == '-') {
      fprintf(stderr, "bench_mpi: unknown option or missing value: %s\n", a);
      usage(stderr);
      return 2;
    } else {
      for (c = 0; c < N_CASES && strcmp(CASES[c].name, a); ++c) {
      }
      if (c == N_CASES) {
        fprintf(stderr, "bench_mpi: unknown case '%s' (see --list)\n", a);
        return 2;
      }
      if (n_todo < 16) todo[n_todo++] = &CASES[c];
    }
  }
  if (o.reps < 1 || o.reps > 1000 || o.min_steps < 1 || !(o.rep_time >= 0) ||
      !(o.warmup >= 0) || o.calls < 1 || o.profile_steps < 2 || !(o.budget > 0) || !(o.max_mib >= 1e-5 && o.max_mib <= 1024)) {
    fprintf(stderr, "bench_mpi: --reps in 1..1000, --min-steps >= 1, --calls >= 1, times >= 0, "
                    "--budget > 0, --max-mib in (0, 1024]\n");
    return 2;
  }
  if (strcmp(o.model, "nll_step") && strcmp(o.model, "dw4")) {
    fprintf(stderr, "bench_mpi: --model must be nll_step or dw4\n");
    return 2;
  }
  if (n_todo == 0) {
    usage(stderr);
    return 2;
  }
  if (openblas_set_num_threads) openblas_set_num_threads(1);
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
    fprintf(stderr, "bench_mpi: MPI_Init failed\n");
    return 1;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  for (i = 0; i < n_todo; ++i) {
    bench_out out;
    out.len = 0;
    out.buf[0] = '\0';
    if (todo[i]->run(&o, &out)) failed = 1;
    out_print(todo[i]->name, &out);
  }
  MPI_Finalize();
  return failed;
}
