/* h5mcmc.c — reference MCMC files (layout in include/tradeflow/h5io.h).
 *
 * Exported: tf_mcmc_file_write.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "h5-impl.h"

static int check(const char *path, const tf_mcmc_file *f) {
  if (!f || f->n < 0 || f->d < 1 || f->m < 0 || f->k < 0 || f->n_summary < 0)
    return tf_error(TF_EINVAL, "%s: MCMC file: bad sizes", path);
  if (f->n > 0 && (!f->x || !f->c || !f->log_q || !f->chain || (f->m > 0 && !f->obs)))
    return tf_error(TF_EINVAL, "%s: MCMC file: a dataset is NULL", path);
  for (int64_t j = 0; j < f->m; j++)
    if (!f->obs_names || !f->obs_names[j])
      return tf_error(TF_EINVAL, "%s: MCMC file: observable name %lld is NULL", path, (long long)j);
  for (int i = 0; i < f->n_summary; i++)
    if (!f->summary_names || !f->summary_names[i] || (f->k > 0 && !f->summary[i]))
      return tf_error(TF_EINVAL, "%s: MCMC file: summary column %d is NULL", path, i);
  for (int64_t i = 0; i < f->n; i++) {
    if (!isfinite(f->c[i]) || !isfinite(f->log_q[i]))
      return tf_error(TF_ENUMERIC, "%s: MCMC row %lld: c = %g, log_q = %g", path, (long long)i,
                      f->c[i], f->log_q[i]);
    for (int64_t j = 0; j < f->d; j++)
      if (!isfinite(f->x[i * f->d + j]))
        return tf_error(TF_ENUMERIC, "%s: MCMC row %lld, column %lld is %g", path,
                        (long long)i, (long long)j, f->x[i * f->d + j]);
  }
  return TF_OK;
}

static int put(hid_t h, const char *path, const tf_mcmc_file *f) {
  int st = tf__h5_put_header(h, path, TF_MCMC_FORMAT);
  const char *const sk[] = {"physics", "physics_params", "sampler", "config"};
  const char *const sv[] = {f->physics, f->physics_params, f->sampler, f->config_text};
  for (size_t i = 0; st == TF_OK && i < 4; i++) st = tf__h5_attr_put_str(h, path, sk[i], sv[i]);
  const char *const ik[] = {"N", "D", "K", "chains", "n_per_chain", "burn_in", "thin", "seed"};
  const int64_t iv[] = {f->n, f->d, f->k, f->chains, f->n_per_chain, f->burn_in, f->thin, f->seed};
  for (size_t i = 0; st == TF_OK && i < 8; i++) st = tf__h5_attr_put_i64(h, path, ik[i], iv[i]);
  const hsize_t dx[2] = {(hsize_t)f->n, (hsize_t)f->d}, d1[1] = {(hsize_t)f->n},
                dobs[2] = {(hsize_t)f->n, (hsize_t)f->m}, dk[1] = {(hsize_t)f->k};
  if (st == TF_OK)
    st = tf__h5_dset_put(h, path, "x", "x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dx, f->x, NULL);
  if (st == TF_OK)
    st = tf__h5_dset_put(h, path, "c", "c", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d1, f->c, NULL);
  if (st == TF_OK)
    st = tf__h5_dset_put(h, path, "log_q", "log_q", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, d1,
                         f->log_q, NULL);
  if (st == TF_OK)
    st = tf__h5_dset_put(h, path, "chain", "chain", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d1,
                         f->chain, NULL);
  if (st == TF_OK && f->m > 0) {
    hid_t d = H5I_INVALID_HID;
    st = tf__h5_dset_put(h, path, "obs", "obs", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dobs,
                         f->obs, &d);
    if (st == TF_OK)
      st = tf__h5_attr_put_strs(d, path, "observables", (hsize_t)f->m, f->obs_names);
    tf__h5_close(&d);
  }
  if (st == TF_OK && f->n_summary > 0) {
    hid_t g = H5Gcreate2(h, "conditions", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return tf__h5_fail(TF_EIO, "%s: cannot create group /conditions", path);
    for (int i = 0; st == TF_OK && i < f->n_summary; i++)
      st = tf__h5_dset_put(g, path, f->summary_names[i], f->summary_names[i], H5T_IEEE_F64LE,
                           H5T_NATIVE_DOUBLE, 1, dk, f->summary[i], NULL);
    tf__h5_close(&g);
  }
  return st;
}

int tf_mcmc_file_write(const char *path, const tf_mcmc_file *f) {
  if (!path) return tf_error(TF_EINVAL, "tf_mcmc_file_write: path is NULL");
  int st = check(path, f);
  if (st) return st;
  tf__h5_quiet q = tf__h5_quiet_on();
  tf__h5_atomic a;
  st = tf__h5_atomic_begin(&a, path);
  if (st == TF_OK) {
    st = put(a.file, path, f);
    if (st == TF_OK)
      st = tf__h5_atomic_commit(&a);
    else
      tf__h5_atomic_abort(&a);
  }
  tf__h5_quiet_off(q);
  return st;
}
