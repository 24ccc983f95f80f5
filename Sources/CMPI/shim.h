#ifndef MLRES_CMPI_SHIM_H
#define MLRES_CMPI_SHIM_H
#include <mpi.h>
#include <stdint.h>
/* Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE, ...) are macros that
   expand to addresses of internal symbols; Swift cannot import them, so every call the project
   makes goes through one of these functions. All work on MPI_COMM_WORLD. Each returns the MPI
   error code (MPI_SUCCESS == 0). */

static inline int mlres_mpi_success(void) { return MPI_SUCCESS; }

/* MPI_Init_thread asking for MPI_THREAD_FUNNELED (only the main thread calls MPI; oneDNN's
   OpenMP threads and the data prefetch thread never do). *provided receives the level given,
   *funneled whether it is at least FUNNELED. */
static inline int mlres_mpi_init(int *funneled) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    *funneled = provided >= MPI_THREAD_FUNNELED;
    /* Errors come back as codes (so the caller can name what failed) instead of the default
       MPI_ERRORS_ARE_FATAL handler aborting without a word. */
    if (rc == MPI_SUCCESS) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return rc;
}
static inline int mlres_mpi_initialized(void) { int f = 0; MPI_Initialized(&f); return f; }
static inline int mlres_mpi_finalized(void) { int f = 0; MPI_Finalized(&f); return f; }
static inline int mlres_mpi_finalize(void) { return MPI_Finalize(); }
static inline int mlres_mpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }
static inline int mlres_mpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }
static inline int mlres_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
static inline int mlres_mpi_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }

/* In-place sums over all ranks (MPI_Allreduce with MPI_IN_PLACE). */
static inline int mlres_mpi_allreduce_sum_float(float *buf, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static inline int mlres_mpi_allreduce_sum_double(double *buf, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}
static inline int mlres_mpi_allreduce_sum_int64(int64_t *buf, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
}
/* In-place maximum and minimum (stop flags, agreement checks). */
static inline int mlres_mpi_allreduce_max_int64(int64_t *buf, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
}
static inline int mlres_mpi_allreduce_min_int64(int64_t *buf, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
}
/* Broadcast of raw bytes from `root`. */
static inline int mlres_mpi_bcast_bytes(void *buf, int count, int root) {
    return MPI_Bcast(buf, count, MPI_BYTE, root, MPI_COMM_WORLD);
}
/* The library's text for an error code (into buf, at most MPI_MAX_ERROR_STRING bytes). */
static inline int mlres_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline void mlres_mpi_error_string(int code, char *buf) {
    int len = 0;
    if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) { buf[0] = 0; return; }
    buf[len] = 0;
}
/* The library's version line ("Open MPI v4.1.4, ..."). */
static inline void mlres_mpi_library_version(char *buf, int cap) {
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    int n = len < cap - 1 ? len : cap - 1;
    for (int i = 0; i < n; i++) buf[i] = v[i];
    buf[n] = 0;
}
#endif
