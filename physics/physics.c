/* physics.c — the registry and the generic half of include/tradeflow/physics.h.
 *
 * Exported: tf_physics_module_count, tf_physics_module_name, tf_physics_module_help,
 *   tf_physics_create, tf_physics_destroy, tf_physics_name, tf_physics_describe,
 *   tf_physics_dim, tf_physics_param, tf_physics_param_range, tf_physics_default_range,
 *   tf_physics_log_q, tf_physics_energy, tf_physics_log_z, tf_physics_has_sampler,
 *   tf_physics_sample, tf_physics_n_obs, tf_physics_obs_name, tf_physics_observables,
 *   tf_physics_n_derived, tf_physics_derived_name, tf_physics_derived,
 *   tf_physics_import, tf_physics_export_dim, tf_physics_export, tf_physics_augment_group,
 *   tf_physics_augment
 *   (tf_mcmc_defaults and tf_physics_mcmc are in mcmc.c).
 * Private, shared with the modules: tf_phys_check_param.
 *
 * Every entry point validates its arguments (NULL handle or arrays, n < 0, c outside the
 * module's valid interval) and reports with tf_error; the modules then see only valid input.
 * Nothing here allocates except tf_physics_create.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "physics-impl.h"
#include "tradeflow/error.h"

static const tf_phys_module *const registry[] = {
    &tf_phys_double_well, &tf_phys_multiwell, &tf_phys_manywell, &tf_phys_gmm,
    &tf_phys_mueller_brown, &tf_phys_dw4, &tf_phys_lj13, &tf_phys_phi4, &tf_phys_phi4_mass};
enum { N_MODULES = (int)(sizeof registry / sizeof registry[0]) };

/* ---- registry ------------------------------------------------------------------------------ */

int tf_physics_module_count(void) { return N_MODULES; }

const char *tf_physics_module_name(int i) {
  return i >= 0 && i < N_MODULES ? registry[i]->name : NULL;
}

const char *tf_physics_module_help(int i) {
  return i >= 0 && i < N_MODULES ? registry[i]->help : NULL;
}

/* "double_well, multiwell, ..." into buf, for messages */
static const char *module_list(char *buf, size_t len) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; i < N_MODULES && k < len; i++)
    k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "", registry[i]->name);
  return buf;
}

/* ---- options ------------------------------------------------------------------------------- */

/* Shortest %g form that reads back as the same double, so describe() round-trips. */
static void format_real(char *buf, size_t len, double v) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}

/* Index of `value` in the '|'-separated list, or -1. */
static int choice_index(const char *choices, const char *value) {
  const size_t n = strlen(value);
  int idx = 0;
  for (const char *s = choices; *s; idx++) {
    const char *e = strchr(s, '|');
    const size_t len = e ? (size_t)(e - s) : strlen(s);
    if (len == n && strncmp(s, value, n) == 0) return idx;
    if (!e) break;
    s = e + 1;
  }
  return -1;
}

/* The choice_index-th entry of the list into buf. */
static void choice_name(const char *choices, int idx, char *buf, size_t len) {
  const char *s = choices;
  for (int i = 0; i < idx && s; i++) {
    s = strchr(s, '|');
    if (s) s++;
  }
  if (!s) s = "?";
  const char *e = strchr(s, '|');
  const size_t n = e ? (size_t)(e - s) : strlen(s);
  snprintf(buf, len, "%.*s", (int)(n < len ? n : len - 1), s);
}

static void accepted_text(const tf_phys_opt *o, char *buf, size_t len) {
  char lo[32], hi[32];
  switch (o->kind) {
  case TF_PHYS_OPT_INT:
    snprintf(buf, len, "an integer in [%.0f, %.0f]", o->lo, o->hi);
    break;
  case TF_PHYS_OPT_REAL:
    format_real(lo, sizeof lo, o->lo);
    format_real(hi, sizeof hi, o->hi);
    snprintf(buf, len, "a real number in [%s, %s]", lo, hi);
    break;
  case TF_PHYS_OPT_CHOICE:
    snprintf(buf, len, "one of %s", o->choices);
    break;
  }
}

static int parse_opt(const tf_phys_module *m, const tf_phys_opt *o, const char *value,
                     double *out) {
  char acc[128];
  accepted_text(o, acc, sizeof acc);
  if (o->kind == TF_PHYS_OPT_CHOICE) {
    const int k = choice_index(o->choices, value);
    if (k < 0)
      return tf_error(TF_EINVAL, "physics module '%s': option %s=%s: bad value (accepted: %s)",
                      m->name, o->key, value, acc);
    *out = k;
    return TF_OK;
  }
  char *end = NULL;
  double v;
  if (o->kind == TF_PHYS_OPT_INT) {
    const long long k = strtoll(value, &end, 10);
    v = (double)k;
  } else {
    v = strtod(value, &end);
  }
  if (end == value || *end != '\0' || !isfinite(v) || v < o->lo || v > o->hi)
    return tf_error(TF_EINVAL, "physics module '%s': option %s=%s: bad value (accepted: %s)",
                    m->name, o->key, value, acc);
  *out = v;
  return TF_OK;
}

static void build_describe(tf_physics *p) {
  size_t k = (size_t)snprintf(p->describe, sizeof p->describe, "%s", p->m->name);
  for (int i = 0; i < p->m->n_opts && k < sizeof p->describe; i++) {
    const tf_phys_opt *o = &p->m->opts[i];
    char v[64];
    if (o->kind == TF_PHYS_OPT_INT)
      snprintf(v, sizeof v, "%.0f", p->opt[i]);
    else if (o->kind == TF_PHYS_OPT_REAL)
      format_real(v, sizeof v, p->opt[i]);
    else
      choice_name(o->choices, (int)p->opt[i], v, sizeof v);
    k += (size_t)snprintf(p->describe + k, sizeof p->describe - k, " %s=%s", o->key, v);
  }
}

/* ---- create / destroy ---------------------------------------------------------------------- */

int tf_physics_create(const char *name, int n_opt, const tf_physics_opt *opt, tf_physics **out) {
  char list[256];
  if (!out) return tf_error(TF_EINVAL, "tf_physics_create: out is NULL");
  *out = NULL;
  if (!name)
    return tf_error(TF_EINVAL, "tf_physics_create: module name is NULL (modules: %s)",
                    module_list(list, sizeof list));
  if (n_opt < 0 || (n_opt > 0 && !opt))
    return tf_error(TF_EINVAL, "tf_physics_create('%s'): %d options at %p", name, n_opt,
                    (const void *)opt);
  const tf_phys_module *m = NULL;
  for (int i = 0; i < N_MODULES; i++)
    if (strcmp(registry[i]->name, name) == 0) m = registry[i];
  if (!m)
    return tf_error(TF_EINVAL, "unknown physics module '%s' (modules: %s)", name,
                    module_list(list, sizeof list));

  tf_physics *p = calloc(1, sizeof *p);
  if (!p) return tf_error(TF_ENOMEM, "physics module '%s': out of memory", name);
  p->m = m;
  for (int k = 0; k < m->n_opts; k++) p->opt[k] = m->opts[k].def;

  int given[TF_PHYS_MAX_OPTS] = {0};
  int rc = TF_OK;
  for (int i = 0; i < n_opt && rc == TF_OK; i++) {
    const char *key = opt[i].key, *value = opt[i].value;
    if (!key || !value) {
      rc = tf_error(TF_EINVAL, "physics module '%s': option %d has a NULL %s", name, i,
                    key ? "value" : "key");
      break;
    }
    int k = 0;
    while (k < m->n_opts && strcmp(m->opts[k].key, key) != 0) k++;
    if (k == m->n_opts) {
      char keys[128] = "none";
      size_t len = 0;
      for (int j = 0; j < m->n_opts; j++)
        len += (size_t)snprintf(keys + len, sizeof keys - len, "%s%s", j ? ", " : "",
                                m->opts[j].key);
      rc = tf_error(TF_EINVAL, "physics module '%s': unknown option %s=%s (options: %s)", name,
                    key, value, keys);
    } else if (given[k]) {
      rc = tf_error(TF_EINVAL, "physics module '%s': option %s given twice (second: %s=%s)",
                    name, key, key, value);
    } else {
      given[k] = 1;
      rc = parse_opt(m, &m->opts[k], value, &p->opt[k]);
    }
  }
  if (rc == TF_OK) rc = m->setup(p);
  if (rc != TF_OK) {
    tf_physics_destroy(p);
    return rc;
  }
  build_describe(p);
  *out = p;
  return TF_OK;
}

void tf_physics_destroy(tf_physics *p) {
  if (!p) return;
  if (p->m->teardown)
    p->m->teardown(p);
  else
    free(p->state);
  free(p);
}

/* ---- description --------------------------------------------------------------------------- */

const char *tf_physics_name(const tf_physics *p) { return p ? p->m->name : NULL; }
const char *tf_physics_describe(const tf_physics *p) { return p ? p->describe : NULL; }
int tf_physics_dim(const tf_physics *p) { return p ? p->dim : 0; }
const char *tf_physics_param(const tf_physics *p) { return p ? p->m->param : NULL; }

void tf_physics_param_range(const tf_physics *p, double *lo, double *hi) {
  if (lo) *lo = p ? p->lo : NAN;
  if (hi) *hi = p ? p->hi : NAN;
}

void tf_physics_default_range(const tf_physics *p, double *c_min, double *c_max, double *c0) {
  if (c_min) *c_min = p ? p->cmin : NAN;
  if (c_max) *c_max = p ? p->cmax : NAN;
  if (c0) *c0 = p ? p->c0 : NAN;
}

/* ---- density ------------------------------------------------------------------------------- */

int tf_phys_check_param(const tf_physics *p, double c) {
  if (!(c >= p->lo && c <= p->hi))
    return tf_error(TF_ERANGE, "physics module '%s': parameter %s = %.17g outside [%g, %g]",
                    p->m->name, p->m->param, c, p->lo, p->hi);
  return TF_OK;
}

static int check_rows(const tf_physics *p, const char *fn, int64_t n, const void *x) {
  if (!p) return tf_error(TF_EINVAL, "%s: physics handle is NULL", fn);
  if (n < 0) return tf_error(TF_EINVAL, "%s (%s): n = %lld < 0", fn, p->m->name, (long long)n);
  if (n > 0 && !x) return tf_error(TF_EINVAL, "%s (%s): x is NULL", fn, p->m->name);
  return TF_OK;
}

int tf_physics_log_q(const tf_physics *p, int64_t n, const double *x, const double *c,
                     double *log_q, double *grad_x, double *dlogq_dc) {
  int rc = check_rows(p, "tf_physics_log_q", n, x);
  if (rc) return rc;
  if (n > 0 && !c) return tf_error(TF_EINVAL, "tf_physics_log_q (%s): c is NULL", p->m->name);
  for (int64_t i = 0; i < n; i++) {
    rc = tf_phys_check_param(p, c[i]);
    if (rc) return tf_error(rc, "%s (row %lld)", tf_errmsg(), (long long)i);
  }
  const int d = p->dim;
  if (p->m->form == TF_PHYS_ACTION) {
    for (int64_t i = 0; i < n; i++) {
      double *g = grad_x ? grad_x + i * d : NULL, ds_dc;
      const double s = p->m->action(p, x + i * d, c[i], g, dlogq_dc ? &ds_dc : NULL);
      if (log_q) log_q[i] = -s;
      if (g)
        for (int k = 0; k < d; k++) g[k] = -g[k];
      if (dlogq_dc) dlogq_dc[i] = -ds_dc;
    }
    return TF_OK;
  }
  const int temperature = p->m->form == TF_PHYS_TEMPERATURE;
  for (int64_t i = 0; i < n; i++) {
    double *g = grad_x ? grad_x + i * d : NULL;
    const double u = p->m->energy(p, x + i * d, g);
    /* log q = -u * f with f = 1/T or beta */
    const double f = temperature ? 1.0 / c[i] : c[i];
    if (log_q) log_q[i] = -u * f;
    if (g)
      for (int k = 0; k < d; k++) g[k] = -f * g[k];
    if (dlogq_dc) dlogq_dc[i] = temperature ? u * f * f : -u;
  }
  return TF_OK;
}

int tf_physics_energy(const tf_physics *p, int64_t n, const double *x, double *u) {
  int rc = check_rows(p, "tf_physics_energy", n, x);
  if (rc) return rc;
  if (n > 0 && !u) return tf_error(TF_EINVAL, "tf_physics_energy (%s): u is NULL", p->m->name);
  if (p->m->form == TF_PHYS_ACTION)
    return tf_error(TF_EUNSUP, "tf_physics_energy: the action of module %s depends on %s; "
                    "use the observable 'energy' (tf_physics_observables with c)", p->m->name,
                    p->m->param);
  for (int64_t i = 0; i < n; i++) u[i] = p->m->energy(p, x + i * p->dim, NULL);
  return TF_OK;
}

int tf_physics_log_z(const tf_physics *p, double c, double *log_z) {
  if (!p || !log_z) return tf_error(TF_EINVAL, "tf_physics_log_z: NULL argument");
  if (!p->m->log_z)
    return tf_error(TF_EUNSUP, "physics module '%s' has no exact log Z", p->m->name);
  const int rc = tf_phys_check_param(p, c);
  if (rc) return rc;
  return p->m->log_z(p, c, log_z);
}

/* ---- samplers ------------------------------------------------------------------------------ */

int tf_physics_has_sampler(const tf_physics *p, double c) {
  if (!p || !p->m->has_sampler || !(c >= p->lo && c <= p->hi)) return 0;
  return p->m->has_sampler(p, c);
}

int tf_physics_sample(const tf_physics *p, double c, int64_t n, tf_rng *rng, double *x) {
  int rc = check_rows(p, "tf_physics_sample", n, x);
  if (rc) return rc;
  if (!rng) return tf_error(TF_EINVAL, "tf_physics_sample (%s): rng is NULL", p->m->name);
  rc = tf_phys_check_param(p, c);
  if (rc) return rc;
  if (!tf_physics_has_sampler(p, c))
    return tf_error(TF_EUNSUP, "physics module '%s' has no exact sampler at %s = %.17g",
                    p->m->name, p->m->param, c);
  return p->m->sample(p, c, n, rng, x);
}

/* ---- observables --------------------------------------------------------------------------- */

int tf_physics_n_obs(const tf_physics *p) { return p ? p->m->n_obs : 0; }

const char *tf_physics_obs_name(const tf_physics *p, int k) {
  return p && k >= 0 && k < p->m->n_obs ? p->m->obs_names[k] : NULL;
}

/* c may be NULL for modules with an energy U(x); action modules need it (checked when given). */
int tf_physics_observables(const tf_physics *p, int64_t n, const double *x, const double *c,
                           double *obs) {
  int rc = check_rows(p, "tf_physics_observables", n, x);
  if (rc) return rc;
  if (n > 0 && !obs)
    return tf_error(TF_EINVAL, "tf_physics_observables (%s): obs is NULL", p->m->name);
  const int action = p->m->form == TF_PHYS_ACTION;
  if (n > 0 && action && !c)
    return tf_error(TF_EINVAL, "tf_physics_observables (%s): the observables depend on %s; c "
                    "is NULL", p->m->name, p->m->param);
  for (int64_t i = 0; c && i < n; i++) {
    rc = tf_phys_check_param(p, c[i]);
    if (rc) return tf_error(rc, "%s (row %lld)", tf_errmsg(), (long long)i);
  }
  const int no = p->m->n_obs;
  for (int64_t i = 0; i < n; i++) {
    const double *xi = x + i * p->dim;
    double *o = obs + i * no;
    o[0] = action ? p->m->action(p, xi, c[i], NULL, NULL) : p->m->energy(p, xi, NULL);
    if (p->m->observables) p->m->observables(p, xi, o[0], o);
  }
  return TF_OK;
}

int tf_physics_n_derived(const tf_physics *p) { return p ? p->m->n_derived : 0; }

const char *tf_physics_derived_name(const tf_physics *p, int k) {
  return p && k >= 0 && k < p->m->n_derived ? p->m->derived_names[k] : NULL;
}

int tf_physics_derived(const tf_physics *p, const double *means, double *out) {
  if (!p || (p->m->n_derived > 0 && (!means || !out)))
    return tf_error(TF_EINVAL, "tf_physics_derived: NULL argument");
  if (p->m->n_derived > 0) p->m->derived(p, means, out);
  return TF_OK;
}

/* ---- external data ------------------------------------------------------------------------- */

int tf_physics_import(const tf_physics *p, int64_t n, int64_t raw_dim, const double *raw,
                      double *x) {
  int rc = check_rows(p, "tf_physics_import", n, raw);
  if (rc) return rc;
  if (n > 0 && !x) return tf_error(TF_EINVAL, "tf_physics_import (%s): x is NULL", p->m->name);
  if (raw_dim == p->dim) {
    if (n > 0 && x != raw) memmove(x, raw, (size_t)(n * p->dim) * sizeof *x);
    return TF_OK;
  }
  if (raw_dim == p->raw_dim && p->m->import_raw) {
    p->m->import_raw(p, n, raw, x);
    return TF_OK;
  }
  if (p->raw_dim != p->dim)
    return tf_error(TF_EINVAL,
                    "tf_physics_import (%s): %lld columns; accepted: %lld (Cartesian) or %d "
                    "(module coordinates)",
                    p->m->name, (long long)raw_dim, (long long)p->raw_dim, p->dim);
  return tf_error(TF_EINVAL, "tf_physics_import (%s): %lld columns; accepted: %d", p->m->name,
                  (long long)raw_dim, p->dim);
}

int64_t tf_physics_export_dim(const tf_physics *p) { return p ? p->raw_dim : 0; }

int tf_physics_export(const tf_physics *p, int64_t n, const double *x, double *raw) {
  int rc = check_rows(p, "tf_physics_export", n, x);
  if (rc) return rc;
  if (n > 0 && !raw)
    return tf_error(TF_EINVAL, "tf_physics_export (%s): raw is NULL", p->m->name);
  if (p->raw_dim == p->dim || !p->m->export_raw) {
    if (n > 0 && x != raw) memmove(raw, x, (size_t)(n * p->dim) * sizeof *x);
    return TF_OK;
  }
  if (n > 0 && x == raw)
    return tf_error(TF_EINVAL, "tf_physics_export (%s): x and raw must not alias", p->m->name);
  p->m->export_raw(p, n, x, raw);
  return TF_OK;
}

const char *tf_physics_augment_group(const tf_physics *p) {
  return p && p->m->augment ? p->m->augment_group : NULL;
}

int tf_physics_augment(const tf_physics *p, int64_t n, double *x, tf_rng *rng) {
  int rc = check_rows(p, "tf_physics_augment", n, x);
  if (rc) return rc;
  if (!p->m->augment)
    return tf_error(TF_EUNSUP, "tf_physics_augment: module %s has no symmetry augmentation",
                    p->m->name);
  if (n > 0 && !rng) return tf_error(TF_EINVAL, "tf_physics_augment (%s): rng is NULL", p->m->name);
  p->m->augment(p, n, x, rng);
  return TF_OK;
}
