/* model.c — the model-family registry, model instances and what every family gets for free.
 *
 * Exported: tf_model_type_count, tf_model_type_at, tf_model_type_find, tf_model_register,
 *           tf_model_common_keys, tf_model_common_n, tf_model_schema, tf_model_family_of,
 *           tf_model_create, tf_model_from_config, tf_model_destroy, tf_model_init,
 *           tf_model_data_init, tf_model_log_prob, tf_model_sample, tf_model_train_term,
 *           tf_model_fit_layer, tf_model_encode, tf_model_decode, tf_model_type_of,
 *           tf_model_family, tf_model_caps, tf_model_dim, tf_model_latent_dim,
 *           tf_model_conditional, tf_model_params, tf_model_describe, tf_model_require,
 *           tf_model_state, tf_model_set_state, tf_model_set_shape, tf_dataset_log_prob,
 *           tf_model_draw, tf_dataset_gather.
 * Nothing here is collective.
 */
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models-impl.h"
#include "tradeflow/error.h"
#include "tradeflow/model.h"

enum { MAX_TYPES = 32, VAL_CHUNK = 4096 };

struct tf_model {
  const tf_model_type *type;
  tf_params *params;
  void *state;
  int dim, latent_dim, conditional;
};

/* ---- registry ------------------------------------------------------------------------------ */

static const tf_model_type *builtin[] = {&tf_model_coupling};
enum { N_BUILTIN = sizeof builtin / sizeof builtin[0] };
static const tf_model_type *added[MAX_TYPES];
static int n_added;

int tf_model_type_count(void) { return N_BUILTIN + n_added; }

const tf_model_type *tf_model_type_at(int i) {
  if (i < 0 || i >= tf_model_type_count()) return NULL;
  return i < N_BUILTIN ? builtin[i] : added[i - N_BUILTIN];
}

static void list_families(char *buf, size_t len) {
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < tf_model_type_count() && k < len; i++)
    k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "", tf_model_type_at(i)->name);
}

const tf_model_type *tf_model_type_find(const char *name) {
  for (int i = 0; i < tf_model_type_count(); i++)
    if (!strcmp(tf_model_type_at(i)->name, name)) return tf_model_type_at(i);
  char known[512];
  list_families(known, sizeof known);
  tf_error(TF_EINVAL, "unknown model family '%s'; known: %s", name, known);
  return NULL;
}

int tf_model_register(const tf_model_type *t) {
  if (!t || !t->name || !t->name[0] || !t->create || !t->init || (t->n_keys && !t->keys))
    return tf_error(TF_EINVAL, "tf_model_register: a type needs a name, create and init hooks");
  if ((t->caps & TF_MODEL_LOG_PROB) && !t->log_prob)
    return tf_error(TF_EINVAL, "tf_model_register: family %s claims log p but has no log_prob",
                    t->name);
  if ((t->caps & TF_MODEL_SAMPLE) && !t->sample)
    return tf_error(TF_EINVAL, "tf_model_register: family %s claims sampling but has no sample",
                    t->name);
  for (int i = 0; i < tf_model_type_count(); i++) {
    if (tf_model_type_at(i) == t) return TF_OK; /* registering twice is harmless */
    if (!strcmp(tf_model_type_at(i)->name, t->name))
      return tf_error(TF_EINVAL, "tf_model_register: a family named %s exists already",
                      t->name);
  }
  for (int i = 0; i < t->n_keys; i++) {
    const tf_cfg_key *k = &t->keys[i];
    int common = 0;
    for (int j = 0; j < tf_model_common_n; j++) common |= !strcmp(k->key, tf_model_common_keys[j].key);
    if (strcmp(k->section, "model") || common)
      return tf_error(TF_EINVAL, "tf_model_register: family %s: key %s.%s is common or not in "
                      "[model]", t->name, k->section, k->key);
  }
  if (n_added == MAX_TYPES)
    return tf_error(TF_EINVAL, "tf_model_register: at most %d added families", MAX_TYPES);
  added[n_added++] = t;
  return TF_OK;
}

/* ---- config -------------------------------------------------------------------------------- */

#define UNB 1, 0 /* unbounded range */

const tf_cfg_key tf_model_common_keys[] = {
    {"model", "name", TF_CFG_STRING, "flow", UNB, NULL, "model name recorded in output files"},
    {"model", "family", TF_CFG_STRING, "coupling", UNB, NULL,
     "model family (tradeflow train --help-config lists them and their keys)"},
    {"model", "dim", TF_CFG_INT, "0", 0, 1e7, NULL,
     "dimension D of x; 0: taken from the data"},
    {"model", "conditional", TF_CFG_BOOL, "true", UNB, NULL,
     "p(x | c) with condition c > 0 (false: p(x))"},
    {"model", "seed", TF_CFG_INT, "1", 0, 9.007199254740992e15, NULL,
     "initialisation and permutations"},
};
const int tf_model_common_n = sizeof tf_model_common_keys / sizeof tf_model_common_keys[0];

/* The family's keys go before the seed: the order of the [model] section of configs written
 * before families existed (tf_config_text writes in schema order). */
int tf_model_schema(const tf_model_type *t, tf_cfg_key *out, int max) {
  const int head = tf_model_common_n - 1, n = tf_model_common_n + t->n_keys;
  if (n > max) return -1;
  for (int i = 0; i < head; i++) out[i] = tf_model_common_keys[i];
  for (int i = 0; i < t->n_keys; i++) out[head + i] = t->keys[i];
  out[n - 1] = tf_model_common_keys[head];
  return n;
}

typedef struct {
  char *out;
  size_t len;
} peek;

static int peek_handler(void *user, const char *section, const char *name, const char *value) {
  peek *p = user;
  /* libinih keeps blanks inside "[ model ]"; the full load trims them the same way */
  while (*section == ' ' || *section == '\t') section++;
  const size_t ls = strcspn(section, " \t");
  if (ls == 5 && !strncmp(section, "model", 5) && !strcmp(name, "family"))
    snprintf(p->out, p->len, "%s", value);
  return 1;
}

void tf_model_family_of(const char *text, int n_set, const char *const *set, char *out,
                        size_t len) {
  snprintf(out, len, "coupling");
  peek p = {out, len};
  /* syntax errors are the full load's to report; a partial parse is good enough here */
  if (text) ini_parse_string(text, peek_handler, &p);
  for (int i = 0; i < n_set; i++) {
    const char *a = set[i], *eq = a ? strchr(a, '=') : NULL;
    if (!eq) continue;
    const char *s = a;
    while (*s == ' ' || *s == '\t') s++;
    const char *e = eq;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if (e - s == 12 && !strncmp(s, "model.family", 12)) {
      const char *v = eq + 1;
      while (*v == ' ' || *v == '\t') v++;
      size_t n = strlen(v);
      while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
      snprintf(out, len, "%.*s", (int)n, v);
    }
  }
}

/* ---- instances ----------------------------------------------------------------------------- */

tf_model *tf_model_create(const tf_model_type *t, const void *spec) {
  tf_model *m = calloc(1, sizeof *m);
  if (!m) {
    tf_error(TF_ENOMEM, "model: out of memory");
    return NULL;
  }
  m->type = t;
  m->params = tf_params_create();
  if (!m->params) {
    tf_error(TF_ENOMEM, "model: out of memory");
    goto fail;
  }
  if (t->create(m, spec) != TF_OK) goto fail;
  if (m->dim < 1) {
    tf_error(TF_EINVAL, "model family %s: create set no dimension (tf_model_set_shape)",
             t->name);
    goto fail;
  }
  if (tf_params_finalize(m->params) != TF_OK) goto fail;
  return m;
fail:
  tf_model_destroy(m);
  return NULL;
}

int tf_model_from_config(const tf_config *cfg, int64_t data_dim, tf_model **out) {
  *out = NULL;
  const tf_model_type *t = tf_model_type_find(tf_config_str(cfg, "model", "family"));
  if (!t)
    return tf_error(TF_EINVAL, "%s: model.family: %s", tf_config_where(cfg, "model", "family"),
                    tf_errmsg());
  tf_model_common co;
  co.dim = tf_config_int(cfg, "model", "dim");
  if (co.dim == 0) co.dim = data_dim;
  if (co.dim == 0)
    return tf_error(TF_EINVAL, "%s: model.dim = 0 means 'from the data', but there is no data "
                    "here; set model.dim", tf_config_where(cfg, "model", "dim"));
  if (data_dim && co.dim != data_dim)
    return tf_error(TF_EINVAL, "%s: model.dim = %lld, but the data have %lld columns",
                    tf_config_where(cfg, "model", "dim"), (long long)co.dim,
                    (long long)data_dim);
  co.conditional = tf_config_bool(cfg, "model", "conditional");
  co.seed = (uint64_t)tf_config_int(cfg, "model", "seed");
  void *spec = calloc(1, t->spec_size ? t->spec_size : 1);
  if (!spec) return tf_error(TF_ENOMEM, "model: out of memory");
  int rc = t->configure ? t->configure(cfg, &co, spec) : TF_OK;
  if (rc == TF_OK) {
    *out = tf_model_create(t, spec);
    if (!*out) rc = TF_EINVAL;
  }
  free(spec);
  return rc;
}

void tf_model_destroy(tf_model *m) {
  if (!m) return;
  if (m->type->destroy)
    m->type->destroy(m);
  else
    free(m->state);
  tf_params_destroy(m->params);
  free(m);
}

int tf_model_init(tf_model *m) { return m->type->init(m); }

int tf_model_data_init(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c) {
  return m->type->data_init ? m->type->data_init(m, ctx, x, c) : TF_OK;
}

/* A missing hook fails the context, so that a chain of tensor ops reports it once. */
static tf_tensor *unsupported(tf_model *m, tf_ctx *ctx, const char *what) {
  tf_ctx_fail(ctx, TF_EUNSUP, "model family %s has no %s", m->type->name, what);
  return NULL;
}

tf_tensor *tf_model_log_prob(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c) {
  if (!m->type->log_prob) return unsupported(m, ctx, "exact log-density");
  return m->type->log_prob(m, ctx, x, c);
}

tf_tensor *tf_model_sample(tf_model *m, tf_ctx *ctx, tf_tensor *c, int64_t n, tf_rng *rng,
                           tf_tensor **log_p) {
  if (!m->type->sample) return unsupported(m, ctx, "sampler");
  return m->type->sample(m, ctx, c, n, rng, log_p);
}

tf_tensor *tf_model_train_term(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c,
                               const tf_model_step *st) {
  if (m->type->train_term) return m->type->train_term(m, ctx, x, c, st);
  return tf_scale(ctx, tf_mean_all(ctx, tf_model_log_prob(m, ctx, x, c)), -1);
}

int tf_model_fit_layer(tf_model *m, tf_ctx *ctx, const tf_dataset *data, int layer) {
  if (!m->type->fit_layer)
    return tf_error(TF_EUNSUP, "model family %s is not fitted layer by layer", m->type->name);
  return m->type->fit_layer(m, ctx, data, layer);
}

tf_tensor *tf_model_encode(tf_model *m, tf_ctx *ctx, tf_tensor *x, tf_tensor *c) {
  if (!m->type->encode) return unsupported(m, ctx, "encoder");
  return m->type->encode(m, ctx, x, c);
}

tf_tensor *tf_model_decode(tf_model *m, tf_ctx *ctx, tf_tensor *z, tf_tensor *c) {
  if (!m->type->decode) return unsupported(m, ctx, "decoder");
  return m->type->decode(m, ctx, z, c);
}

const tf_model_type *tf_model_type_of(const tf_model *m) { return m->type; }
const char *tf_model_family(const tf_model *m) { return m->type->name; }
unsigned tf_model_caps(const tf_model *m) { return m->type->caps; }
int tf_model_dim(const tf_model *m) { return m->dim; }
int tf_model_latent_dim(const tf_model *m) { return m->latent_dim; }
int tf_model_conditional(const tf_model *m) { return m->conditional; }
tf_params *tf_model_params(const tf_model *m) { return m->params; }
void *tf_model_state(const tf_model *m) { return m->state; }
void tf_model_set_state(tf_model *m, void *state) { m->state = state; }

void tf_model_set_shape(tf_model *m, int dim, int latent_dim, int conditional) {
  m->dim = dim;
  m->latent_dim = latent_dim;
  m->conditional = conditional;
}

void tf_model_describe(const tf_model *m, char *buf, size_t len) {
  if (m->type->describe)
    m->type->describe(m, buf, len);
  else
    snprintf(buf, len, "%s", m->type->name);
}

int tf_model_require(const tf_model *m, unsigned caps, const char *who) {
  static const struct {
    unsigned flag;
    const char *what;
  } names[] = {
      {TF_MODEL_LOG_PROB, "exact log-density log p(x | c)"},
      {TF_MODEL_DC, "d/dc log p(x | c) (its log-density does not carry a tangent in c)"},
      {TF_MODEL_SAMPLE, "reparametrised sampler"},
      {TF_MODEL_GRADIENT, "gradient training"},
      {TF_MODEL_LAYERWISE, "layer-by-layer fit"},
      {TF_MODEL_LATENT, "latent space of lower dimension"},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if ((caps & names[i].flag) && !(m->type->caps & names[i].flag))
      return tf_error(TF_EUNSUP, "%s: model family '%s' has no %s", who, m->type->name,
                      names[i].what);
  return TF_OK;
}

/* ---- helpers over any family --------------------------------------------------------------- */

void tf_dataset_gather(tf_ctx *ctx, const tf_dataset *d, int conditional, const int64_t *rows,
                       int64_t first, int64_t n, tf_tensor **x, tf_tensor **c) {
  const int64_t D = d->d;
  *x = tf_new2(ctx, n, D);
  *c = conditional ? tf_new2(ctx, n, 1) : NULL;
  if (!*x || (conditional && !*c)) return;
  for (int64_t i = 0; i < n; i++) {
    const int64_t r = rows ? rows[i] : first + i;
    const double *src = d->x + r * D;
    for (int64_t j = 0; j < D; j++) (*x)->data[i * D + j] = (tf_real)src[j];
    if (*c) (*c)->data[i] = (tf_real)(d->c ? d->c[r] : d->c0);
  }
}

int tf_dataset_log_prob(tf_model *m, tf_ctx *ctx, const tf_dataset *data, const int64_t *rows,
                        int64_t n, double *log_p) {
  const int grad = tf_ctx_set_grad(ctx, 0);
  int rc = TF_OK;
  for (int64_t i0 = 0; i0 < n && rc == TF_OK; i0 += VAL_CHUNK) {
    const int64_t k = n - i0 < VAL_CHUNK ? n - i0 : VAL_CHUNK;
    tf_ctx_reset(ctx);
    tf_tensor *x, *c;
    tf_dataset_gather(ctx, data, m->conditional, rows ? rows + i0 : NULL, i0, k, &x, &c);
    tf_tensor *lp = tf_model_log_prob(m, ctx, x, c);
    if (!lp) {
      rc = tf_ctx_status(ctx) ? tf_ctx_status(ctx) : TF_EINVAL;
      break;
    }
    for (int64_t i = 0; i < k; i++) log_p[i0 + i] = (double)lp->data[i];
  }
  tf_ctx_reset(ctx);
  tf_ctx_set_grad(ctx, grad);
  return rc;
}

int tf_model_draw(tf_model *m, tf_ctx *ctx, double c, int64_t n, int64_t chunk, tf_rng *rng,
                  double *x, double *log_p) {
  const int64_t D = m->dim;
  const int grad = tf_ctx_set_grad(ctx, 0);
  int st = TF_OK;
  /* A piece's intermediates scale as rows x D x channels: before block-scoped inference
   * (coupling/flow.c) a 256-row piece at D = 1024 kept 6 GB, and first-touch page faults cost
   * more than the arithmetic.  With one block's tensors alive at a time, pieces of at most
   * DRAW_ELEMS / D rows keep the working set at ~15 MB (L = 32, 32 channels); the samples do
   * not depend on the piece size. */
  enum { DRAW_ELEMS = 16384 };
  if (chunk > 1 && chunk * D > DRAW_ELEMS) chunk = DRAW_ELEMS / D > 1 ? DRAW_ELEMS / D : 1;
  for (int64_t i0 = 0; i0 < n && st == TF_OK; i0 += chunk) {
    const int64_t k = n - i0 < chunk ? n - i0 : chunk;
    tf_ctx_reset(ctx);
    tf_tensor *ct = m->conditional ? tf_full(ctx, 2, (int64_t[]){k, 1}, c) : NULL, *lp = NULL;
    tf_tensor *xs = tf_model_sample(m, ctx, ct, k, rng, &lp);
    if (!xs || !lp) {
      st = tf_ctx_status(ctx) ? tf_ctx_status(ctx) : TF_EINVAL;
      tf_error(st, "sampling the model at c = %g: %s", c, tf_errmsg());
      break;
    }
    for (int64_t i = 0; i < k * D; i++) x[i0 * D + i] = (double)xs->data[i];
    for (int64_t i = 0; i < k; i++) log_p[i0 + i] = (double)lp->data[i];
  }
  tf_ctx_reset(ctx);
  tf_ctx_set_grad(ctx, grad);
  return st;
}
