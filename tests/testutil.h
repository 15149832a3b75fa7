/* testutil.h — small helpers shared by the cmocka suites (header-only; include after the
 * system headers).  Define TF_TEST_MPI before including it in an MPI suite. */
#ifndef TRADEFLOW_TESTUTIL_H
#define TRADEFLOW_TESTUTIL_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Remove a file or a directory tree (read-only directories included); missing is fine. */
static void __attribute__((unused)) tf_test_rm_rf(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return;
  if (S_ISDIR(sb.st_mode)) {
    chmod(path, 0700);
    DIR *d = opendir(path);
    if (d) {
      struct dirent *e;
      while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        tf_test_rm_rf(sub);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

#ifdef TF_TEST_MPI
#include <mpi.h>
/* The exit status of an MPI suite: cmocka's result rc of this rank, the worst over all ranks
 * (a failure on any rank fails the job); finalises MPI. */
static int __attribute__((unused)) tf_test_mpi_finish(int rc) {
  int worst = 0;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
#endif

#endif
