#ifndef MLRES_CDNNL_SHIM_H
#define MLRES_CDNNL_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>

/* oneDNN runs on the OpenMP runtime it was built with (libgomp, loaded by libdnnl).
   Its controls are looked up at run time so that no libgomp development symlink is needed
   at link time; there is exactly one thread pool, OpenMP's. */

/// Sets the number of OpenMP threads oneDNN uses; returns 0 when the runtime is missing.
static inline int mlres_omp_set_num_threads(int n) {
    void (*f)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (!f) return 0;
    f(n);
    return 1;
}

/// The number of threads the next parallel region uses (0 when the runtime is missing).
static inline int mlres_omp_get_max_threads(void) {
    int (*f)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "omp_get_max_threads");
    return f ? f() : 0;
}

/* DNNL_ARG_* are macros defined through other macros; restate the ones we use as constants. */
enum {
    MLRES_ARG_SRC = DNNL_ARG_SRC,
    MLRES_ARG_SRC_1 = DNNL_ARG_SRC_1,
    MLRES_ARG_DST = DNNL_ARG_DST,
    MLRES_ARG_WEIGHTS = DNNL_ARG_WEIGHTS,
    MLRES_ARG_MEAN = DNNL_ARG_MEAN,
    MLRES_ARG_VARIANCE = DNNL_ARG_VARIANCE,
    MLRES_ARG_SCALE = DNNL_ARG_SCALE,
    MLRES_ARG_SHIFT = DNNL_ARG_SHIFT,
    MLRES_ARG_WORKSPACE = DNNL_ARG_WORKSPACE,
    MLRES_ARG_DIFF_SRC = DNNL_ARG_DIFF_SRC,
    MLRES_ARG_DIFF_DST = DNNL_ARG_DIFF_DST,
    MLRES_ARG_DIFF_WEIGHTS = DNNL_ARG_DIFF_WEIGHTS,
    MLRES_ARG_DIFF_SCALE = DNNL_ARG_DIFF_SCALE,
    MLRES_ARG_DIFF_SHIFT = DNNL_ARG_DIFF_SHIFT,
    MLRES_ARG_MULTIPLE_SRC = DNNL_ARG_MULTIPLE_SRC,
    MLRES_ARG_FROM = DNNL_ARG_FROM,
    MLRES_ARG_TO = DNNL_ARG_TO
};
#endif
