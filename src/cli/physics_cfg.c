/* physics_cfg.c — the [physics] section: which target family a run (or a checkpoint) is about.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tradeflow/error.h"

tf_config *tf_cli_physics_load(const char *text, const char *origin) {
  char *sec = tf_cli_section_text(text, "physics");
  if (!sec) {
    tf_error(TF_ENOMEM, "out of memory");
    return NULL;
  }
  tf_config *c = tf_config_load_string(sec, origin, tf_cli_run_keys,
                                       tf_cli_physics_n(), 0, NULL);
  free(sec);
  return c;
}

int tf_cli_physics_create(const tf_config *cfg, tf_physics **out, tf_cli_range *range) {
  *out = NULL;
  const char *name = tf_config_str(cfg, "physics", "name");
  if (!name[0]) return TF_OK;
  /* Options go to the module only when given: the module owns its defaults. */
  tf_physics_opt opt[4];
  int n_opt = 0;
  if (tf_config_int(cfg, "physics", "dim") != 0)
    opt[n_opt++] = (tf_physics_opt){"dim", tf_config_str(cfg, "physics", "dim")};
  if (tf_config_int(cfg, "physics", "L") != 0)
    opt[n_opt++] = (tf_physics_opt){"L", tf_config_str(cfg, "physics", "L")};
  if (tf_config_real(cfg, "physics", "lambda") != -1)
    opt[n_opt++] = (tf_physics_opt){"lambda", tf_config_str(cfg, "physics", "lambda")};
  tf_physics *p = NULL;
  int rc = tf_physics_create(name, n_opt, opt, &p);
  if (rc != TF_OK)
    return tf_error(rc, "%s: physics.name = %s: %s", tf_config_where(cfg, "physics", "name"),
                    name, tf_errmsg());
  tf_cli_range r;
  tf_physics_default_range(p, &r.c_min, &r.c_max, &r.c0);
  static const char *const keys[3] = {"c_min", "c_max", "c0"};
  double *dst[3] = {&r.c_min, &r.c_max, &r.c0};
  double lo, hi;
  tf_physics_param_range(p, &lo, &hi);
  for (int k = 0; k < 3; k++) {
    const double v = tf_config_real(cfg, "physics", keys[k]);
    if (v == 0) continue;
    if (v < lo || v > hi) {
      rc = tf_error(TF_ERANGE, "%s: physics.%s = %g is outside the valid range [%g, %g] of %s "
                    "for module %s", tf_config_where(cfg, "physics", keys[k]), keys[k], v, lo,
                    hi, tf_physics_param(p), name);
      tf_physics_destroy(p);
      return rc;
    }
    *dst[k] = v;
  }
  if (!(r.c_min <= r.c0 && r.c0 <= r.c_max)) {
    rc = tf_error(TF_EINVAL, "%s: the condition range needs c_min <= c0 <= c_max, got "
                  "c_min = %g, c0 = %g, c_max = %g (%s = %s)",
                  tf_config_where(cfg, "physics", "c0"), r.c_min, r.c0, r.c_max,
                  "physics.name", name);
    tf_physics_destroy(p);
    return rc;
  }
  *out = p;
  if (range) *range = r;
  return TF_OK;
}

int tf_cli_model_physics(const tf_cli_model *m, const char *ckpt, const char *why, double cond,
                         tf_config **pc, tf_physics **p, tf_cli_range *range) {
  *p = NULL;
  *pc = tf_cli_physics_load(m->config_text, ckpt);
  int rc = *pc ? tf_cli_physics_create(*pc, p, range) : TF_EINVAL; /* message already set */
  if (*pc && rc == TF_OK && !*p)
    rc = tf_error(TF_EINVAL, "%s records no physics module: %s", ckpt, why);
  if (rc == TF_OK && tf_model_dim(m->model) != tf_physics_dim(*p))
    rc = tf_error(TF_EINVAL, "%s: the flow has dimension %d but physics module %s has %lld", ckpt,
                  tf_model_dim(m->model), tf_physics_describe(*p), (long long)tf_physics_dim(*p));
  double lo, hi;
  if (rc == TF_OK && isfinite(cond))
    tf_physics_param_range(*p, &lo, &hi);
  if (rc == TF_OK && isfinite(cond) && !(cond >= lo && cond <= hi))
    rc = tf_error(TF_ERANGE, "--condition %g is outside the valid range [%g, %g] of %s for %s",
                  cond, lo, hi, tf_physics_param(*p), tf_physics_describe(*p));
  if (rc != TF_OK) {
    tf_physics_destroy(*p);
    tf_config_destroy(*pc);
    *p = NULL;
    *pc = NULL;
  }
  return rc;
}
