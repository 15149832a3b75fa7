/* particles.c — particle systems in centre-of-mass-free coordinates: dw4, lj13.
 *
 * Module descriptors: tf_phys_dw4, tf_phys_lj13.
 *
 * Coordinates.  N particles in d dimensions have Cartesian positions X (N, d); both energies
 * are invariant under translations, so exp(-U/T) is not integrable over R^(N d).  The module
 * works in the (N - 1) d dimensional centre-of-mass-free subspace, expressed in a fixed
 * orthonormal basis: the Helmert contrasts over particles tensored with the d axes,
 *   x[(k - 1) d + a] = (sum_{i<k} X[i][a] - k X[k][a]) / sqrt(k (k + 1)),   k = 1 .. N-1,
 * i.e. x = B^T X with B (N d, (N-1) d) orthonormal columns orthogonal to every translation.
 * Export maps back with X = B x (zero centre of mass); import accepts (n, N d) Cartesian
 * rows, subtracts each row's mean position and projects (or (n, (N-1) d) module rows,
 * copied).  Because B is orthonormal, Lebesgue measure, distances and U are unchanged, and
 * grad_x = B^T grad_X U (the Cartesian gradient is already translation-free).
 *
 * dw4: N = 4, d = 2, dim = 6, Cartesian width 8.
 *   U = sum_{i<j} 0.9 (d_ij - 4)^4 - 4 (d_ij - 4)^2 (a = 0.9, b = -4, c = 0, d0 = 4: the
 *   convention of ../shared/data/molecular/dw4.h5, sampled at kT = 1).
 * lj13: N = 13, d = 3, dim = 36, Cartesian width 39.  Option pairs = ordered | unordered:
 *   U = f sum_{i<j} [r_ij^-12 - 2 r_ij^-6] + 1/2 sum_i |X_i - Xbar|^2   (eps = rm = 1)
 *   with f = 2 for pairs=ordered (the default: every unordered pair counted twice, the
 *   convention in which ../shared/data/molecular/lj13.h5 is Boltzmann at kT = 1) and f = 1 for
 *   pairs=unordered (the bgflow convention; the same samples then measure kT ~ 0.5).
 *   Overlapping particles (r -> 0) give +inf or NaN; nothing is clamped.
 * Both: log q = -U / T (nothing dropped; the density is proper in the module coordinates, but
 * no exact log Z or sampler exists: the reference sampler is MALA).  Valid T: [0.05, 100];
 * training range [0.7, 1.5] (dw4), [0.8, 1.5] (lj13); T0 = 1.
 * Observables: dw4 energy, d_mean (mean pair distance); lj13 energy, e_lj, e_tether.
 * Symmetries (augment): U depends only on pair distances of identical particles, so it is
 * invariant under the group S_N x O(d) of particle permutations and rotations / reflections
 * about the centre of mass; augment draws both uniformly (Fisher-Yates; Haar on O(d) by the
 * QR decomposition of a Gaussian matrix with the signs of R's diagonal moved into Q).
 */
#include <math.h>
#include <string.h>

#include "physics-impl.h"
#include "tradeflow/error.h"

enum { MAX_CART = 39 };

/* ---- the Helmert basis ------------------------------------------------------------------- */

/* x = B^T X: X (np, d) -> x ((np - 1) d).  Also maps Cartesian gradients to module ones. */
static void helmert_fwd(int np, int d, const double *X, double *x) {
  for (int a = 0; a < d; a++) {
    double prefix = X[a];
    for (int k = 1; k < np; k++) {
      x[(k - 1) * d + a] = (prefix - k * X[k * d + a]) / sqrt((double)k * (k + 1));
      prefix += X[k * d + a];
    }
  }
}

/* X = B x: x ((np - 1) d) -> X (np, d) with zero centre of mass. */
static void helmert_inv(int np, int d, const double *x, double *X) {
  for (int a = 0; a < d; a++) {
    double suffix = 0; /* sum_{k > i} x_k / sqrt(k (k + 1)) */
    for (int i = np - 1; i >= 0; i--) {
      const double own = i > 0 ? -i * x[(i - 1) * d + a] / sqrt((double)i * (i + 1)) : 0;
      X[i * d + a] = own + suffix;
      if (i > 0) suffix += x[(i - 1) * d + a] / sqrt((double)i * (i + 1));
    }
  }
}

static int n_particles(const tf_physics *p, int *d) {
  *d = p->m == &tf_phys_dw4 ? 2 : 3;
  return p->m == &tf_phys_dw4 ? 4 : 13;
}

static void particles_import(const tf_physics *p, int64_t n, const double *raw, double *x) {
  int d;
  const int np = n_particles(p, &d), w = np * d;
  for (int64_t r = 0; r < n; r++) {
    double X[MAX_CART], mean[3] = {0, 0, 0};
    /* copy first: x may alias raw (row r of x ends before row r + 1 of raw starts) */
    memcpy(X, raw + r * w, (size_t)w * sizeof *X);
    for (int i = 0; i < np; i++)
      for (int a = 0; a < d; a++) mean[a] += X[i * d + a] / np;
    for (int i = 0; i < np; i++)
      for (int a = 0; a < d; a++) X[i * d + a] -= mean[a];
    helmert_fwd(np, d, X, x + r * p->dim);
  }
}

static void particles_export(const tf_physics *p, int64_t n, const double *x, double *raw) {
  int d;
  const int np = n_particles(p, &d);
  for (int64_t r = 0; r < n; r++) helmert_inv(np, d, x + r * p->dim, raw + r * np * d);
}

/* Haar-random orthogonal d x d matrix Q (row-major): Gram-Schmidt on the columns of a
 * Gaussian matrix is its QR decomposition with R's diagonal positive, which makes Q Haar
 * distributed on O(d) (Mezzadri 2007); determinant +1 or -1 with probability 1/2 each. */
static void haar_orthogonal(int d, tf_rng *rng, double *Q) {
  for (;;) {
    tf_rng_fill_normal_d(rng, Q, (int64_t)d * d);
    int ok = 1;
    for (int j = 0; j < d && ok; j++) {
      for (int k = 0; k < j; k++) {
        double dot = 0;
        for (int i = 0; i < d; i++) dot += Q[i * d + j] * Q[i * d + k];
        for (int i = 0; i < d; i++) Q[i * d + j] -= dot * Q[i * d + k];
      }
      double nrm = 0;
      for (int i = 0; i < d; i++) nrm += Q[i * d + j] * Q[i * d + j];
      nrm = sqrt(nrm);
      ok = nrm > 1e-8; /* a (probability-zero) degenerate draw: draw again */
      for (int i = 0; i < d && ok; i++) Q[i * d + j] /= nrm;
    }
    if (ok) return;
  }
}

static void particles_augment(const tf_physics *p, int64_t n, double *x, tf_rng *rng) {
  int d;
  const int np = n_particles(p, &d);
  for (int64_t r = 0; r < n; r++) {
    double X[MAX_CART], Y[MAX_CART], Q[9];
    int64_t perm[13];
    helmert_inv(np, d, x + r * p->dim, X);
    tf_rng_permutation(rng, perm, np);
    haar_orthogonal(d, rng, Q);
    for (int i = 0; i < np; i++)
      for (int a = 0; a < d; a++) {
        double s = 0;
        for (int b = 0; b < d; b++) s += Q[a * d + b] * X[perm[i] * d + b];
        Y[i * d + a] = s;
      }
    helmert_fwd(np, d, Y, x + r * p->dim);
  }
}

static int particles_setup(tf_physics *p, double cmin, double cmax) {
  int d;
  const int np = n_particles(p, &d);
  p->dim = (np - 1) * d;
  p->raw_dim = np * d;
  p->lo = 0.05;
  p->hi = 100;
  p->cmin = cmin;
  p->cmax = cmax;
  p->c0 = 1;
  return TF_OK;
}

/* ---- dw4 ------------------------------------------------------------------------------------ */

static int dw4_setup(tf_physics *p) { return particles_setup(p, 0.7, 1.5); }

/* U and the Cartesian gradient G (8) of Cartesian positions X (8) */
static double dw4_cart(const double *X, double *G) {
  double u = 0;
  if (G) memset(G, 0, 8 * sizeof *G);
  for (int i = 0; i < 4; i++)
    for (int j = i + 1; j < 4; j++) {
      const double dx = X[2 * i] - X[2 * j], dy = X[2 * i + 1] - X[2 * j + 1];
      const double r = sqrt(dx * dx + dy * dy), e = r - 4, e2 = e * e;
      u += 0.9 * e2 * e2 - 4 * e2;
      if (G) {
        const double f = (3.6 * e2 * e - 8 * e) / r;
        G[2 * i] += f * dx;
        G[2 * i + 1] += f * dy;
        G[2 * j] -= f * dx;
        G[2 * j + 1] -= f * dy;
      }
    }
  return u;
}

static double dw4_energy(const tf_physics *p, const double *x, double *g) {
  double X[8], G[8];
  helmert_inv(4, 2, x, X);
  const double u = dw4_cart(X, g ? G : NULL);
  if (g) helmert_fwd(4, 2, G, g);
  return u;
}

static const char *const dw4_obs[] = {"energy", "d_mean"};

static void dw4_observables(const tf_physics *p, const double *x, double u, double *obs) {
  double X[8], s = 0;
  helmert_inv(4, 2, x, X);
  for (int i = 0; i < 4; i++)
    for (int j = i + 1; j < 4; j++)
      s += hypot(X[2 * i] - X[2 * j], X[2 * i + 1] - X[2 * j + 1]);
  obs[1] = s / 6;
}

static void dw4_start(const tf_physics *p, int64_t chain, double *x) {
  /* a square of side 4 (pair minima of the potential lie at 2.51 and 5.49) */
  static const double X[8] = {-2, -2, 2, -2, 2, 2, -2, 2};
  helmert_fwd(4, 2, X, x);
}

const tf_phys_module tf_phys_dw4 = {
    .name = "dw4",
    .help = "dw4: 4 particles in 2-D, U = sum_{i<j} 0.9 (d_ij - 4)^4 - 4 (d_ij - 4)^2, log q = "
            "-U/T (nothing dropped), in 6 centre-of-mass-free coordinates (orthonormal Helmert "
            "basis; import takes 8 Cartesian columns and removes the centre of mass, export "
            "writes them back). Parameter T in [0.05, 100], training range [0.7, 1.5], T0 = 1. "
            "No options. No exact log Z or sampler (MALA reference). Observables: energy, "
            "d_mean. Symmetry augmentation: particle permutations x O(2).",
    .param = "T",
    .form = TF_PHYS_TEMPERATURE,
    .setup = dw4_setup,
    .energy = dw4_energy,
    .n_obs = 2,
    .obs_names = dw4_obs,
    .observables = dw4_observables,
    .start = dw4_start,
    .mala_step = 0.3,
    .import_raw = particles_import,
    .export_raw = particles_export,
    .augment = particles_augment,
    .augment_group = "particle permutations x rotations and reflections",
};

/* ---- lj13 ----------------------------------------------------------------------------------- */

static const tf_phys_opt lj_opts[] = {
    {"pairs", TF_PHYS_OPT_CHOICE, 0, 0, 1, "ordered|unordered"}};

static int lj_setup(tf_physics *p) { return particles_setup(p, 0.8, 1.5); }

/* LJ part (with pair factor f) and tether of Cartesian X (39); gradient G (39) if wanted */
static double lj_cart(const double *X, double f, double *G, double *e_lj, double *e_tether) {
  double mean[3] = {0, 0, 0}, ulj = 0, ut = 0;
  for (int i = 0; i < 13; i++)
    for (int a = 0; a < 3; a++) mean[a] += X[3 * i + a] / 13;
  for (int i = 0; i < 13; i++)
    for (int a = 0; a < 3; a++) {
      const double c = X[3 * i + a] - mean[a];
      ut += 0.5 * c * c;
      if (G) G[3 * i + a] = c; /* the mean's own dependence cancels: sum_i (X_i - Xbar) = 0 */
    }
  for (int i = 0; i < 13; i++)
    for (int j = i + 1; j < 13; j++) {
      const double dx = X[3 * i] - X[3 * j], dy = X[3 * i + 1] - X[3 * j + 1],
                   dz = X[3 * i + 2] - X[3 * j + 2];
      const double s = 1 / (dx * dx + dy * dy + dz * dz), s3 = s * s * s, s6 = s3 * s3;
      ulj += s6 - 2 * s3;
      if (G) {
        const double c = f * 12 * s * (s3 - s6); /* (du/dr) / r */
        G[3 * i] += c * dx;
        G[3 * i + 1] += c * dy;
        G[3 * i + 2] += c * dz;
        G[3 * j] -= c * dx;
        G[3 * j + 1] -= c * dy;
        G[3 * j + 2] -= c * dz;
      }
    }
  if (e_lj) *e_lj = f * ulj;
  if (e_tether) *e_tether = ut;
  return f * ulj + ut;
}

static double lj_factor(const tf_physics *p) { return p->opt[0] == 0 ? 2.0 : 1.0; }

static double lj_energy(const tf_physics *p, const double *x, double *g) {
  double X[39], G[39];
  helmert_inv(13, 3, x, X);
  const double u = lj_cart(X, lj_factor(p), g ? G : NULL, NULL, NULL);
  if (g) helmert_fwd(13, 3, G, g);
  return u;
}

static const char *const lj_obs[] = {"energy", "e_lj", "e_tether"};

static void lj_observables(const tf_physics *p, const double *x, double u, double *obs) {
  double X[39];
  helmert_inv(13, 3, x, X);
  lj_cart(X, lj_factor(p), NULL, &obs[1], &obs[2]);
}

static void lj_start(const tf_physics *p, int64_t chain, double *x) {
  /* a centred icosahedron with unit edges: (0, +-1, +-phi) and cyclic, scaled by 1/2 */
  const double phi = 0.5 * (1 + sqrt(5.0));
  double X[39] = {0, 0, 0};
  int k = 1;
  for (int c = 0; c < 3; c++)
    for (int s1 = -1; s1 <= 1; s1 += 2)
      for (int s2 = -1; s2 <= 1; s2 += 2) {
        double v[3];
        v[c] = 0;
        v[(c + 1) % 3] = 0.5 * s1;
        v[(c + 2) % 3] = 0.5 * s2 * phi;
        memcpy(X + 3 * k++, v, sizeof v);
      }
  helmert_fwd(13, 3, X, x);
}

const tf_phys_module tf_phys_lj13 = {
    .name = "lj13",
    .help = "lj13: 13 particles in 3-D, Lennard-Jones (eps = rm = 1) plus the harmonic tether "
            "1/2 sum_i |x_i - xbar|^2, log q = -U/T (nothing dropped), in 36 centre-of-mass-"
            "free coordinates (orthonormal Helmert basis; import takes 39 Cartesian columns). "
            "Options: pairs = ordered (default: each pair counted twice, the convention of "
            "shared/data/molecular/lj13.h5 at kT = 1) | unordered (each pair once). Parameter "
            "T in [0.05, 100], training range [0.8, 1.5], T0 = 1. No exact log Z or sampler "
            "(MALA reference). Observables: energy, e_lj, e_tether. Symmetry augmentation: "
            "particle permutations x O(3).",
    .param = "T",
    .form = TF_PHYS_TEMPERATURE,
    .n_opts = 1,
    .opts = lj_opts,
    .setup = lj_setup,
    .energy = lj_energy,
    .n_obs = 3,
    .obs_names = lj_obs,
    .observables = lj_observables,
    .start = lj_start,
    .mala_step = 0.02,
    .import_raw = particles_import,
    .export_raw = particles_export,
    .augment = particles_augment,
    .augment_group = "particle permutations x rotations and reflections",
};
