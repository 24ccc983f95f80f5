#ifndef MLRES_CHDF5_SHIM_H
#define MLRES_CHDF5_SHIM_H
#include <hdf5.h>
/* HDF5's type and property-list identifiers are macros that call H5open();
   Swift cannot import function-like macros, so they are re-exported here. */
static inline hid_t mlres_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t mlres_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t mlres_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t mlres_H5T_NATIVE_UINT64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t mlres_H5T_C_S1(void) { return H5T_C_S1; }
static inline hid_t mlres_H5T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t mlres_H5T_IEEE_F64LE(void) { return H5T_IEEE_F64LE; }
static inline hid_t mlres_H5T_STD_I64LE(void) { return H5T_STD_I64LE; }
static inline hid_t mlres_H5T_STD_U64LE(void) { return H5T_STD_U64LE; }
static inline hid_t mlres_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t mlres_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t mlres_H5P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t mlres_H5P_DATASET_XFER(void) { return H5P_DATASET_XFER; }
static inline hid_t mlres_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t mlres_H5P_GROUP_CREATE(void) { return H5P_GROUP_CREATE; }
static inline hid_t mlres_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline hid_t mlres_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t mlres_H5S_ALL(void) { return H5S_ALL; }
static inline unsigned mlres_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned mlres_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline unsigned mlres_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned mlres_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline size_t mlres_H5T_VARIABLE(void) { return H5T_VARIABLE; }
static inline hsize_t mlres_H5S_UNLIMITED(void) { return H5S_UNLIMITED; }
static inline int mlres_H5Z_FILTER_FLETCHER32(void) { return H5Z_FILTER_FLETCHER32; }
static inline int mlres_H5Z_FILTER_DEFLATE(void) { return H5Z_FILTER_DEFLATE; }
static inline int mlres_H5Z_FILTER_SHUFFLE(void) { return H5Z_FILTER_SHUFFLE; }

/* Link and object queries whose API names are versioned macros in later HDF5 releases
   (H5Lget_info -> H5Lget_info2 in 1.12): called from C so that the macro picks the version.
   1 = hard link, 0 = other kind (soft, external, user), negative = error. */
static inline int mlres_link_is_hard(hid_t loc, const char *name) {
    H5L_info_t info;
    if (H5Lget_info(loc, name, &info, H5P_DEFAULT) < 0) return -1;
    return info.type == H5L_TYPE_HARD ? 1 : 0;
}

/* The n-th filter id of a dataset creation property list (negative on error). */
static inline int mlres_filter_id(hid_t dcpl, unsigned idx) {
    unsigned flags = 0, config = 0;
    size_t nelmts = 0;
    char name[64];
    return (int)H5Pget_filter2(dcpl, idx, &flags, &nelmts, NULL, sizeof name, name, &config);
}

/* Superblock version of an open file (>= 2: metadata checksums), negative on error. */
static inline int mlres_superblock_version(hid_t file) {
    H5F_info2_t info;
    if (H5Fget_info2(file, &info) < 0) return -1;
    return (int)info.super.version;
}

/* Newest on-disk format: superblock v3 and object headers v2 carry metadata checksums,
   so a flipped bit in the file structure is detected instead of being trusted. */
static inline herr_t mlres_set_latest_format(hid_t fapl) {
    return H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
}

/* Lists a group's link names once, in the order they are stored (H5_ITER_NATIVE: no sort),
   calling `cb(name, is_hard, ctx)` for each; a non-zero return stops the listing. Linear in
   the member count (asking for the i-th name by index, as H5Lget_name_by_idx does, walks
   the link table each time). Called from C so that the H5Literate macro picks the version. */
typedef int (*mlres_link_cb)(const char *name, int is_hard, void *ctx);
struct mlres_link_ctx { mlres_link_cb cb; void *ctx; };
static herr_t mlres_link_trampoline(hid_t g, const char *name, const H5L_info_t *info, void *op) {
    (void)g;
    struct mlres_link_ctx *c = (struct mlres_link_ctx *)op;
    return (herr_t)c->cb(name, info->type == H5L_TYPE_HARD ? 1 : 0, c->ctx);
}
static inline herr_t mlres_iterate_links(hid_t group, mlres_link_cb cb, void *ctx) {
    struct mlres_link_ctx c = { cb, ctx };
    hsize_t idx = 0;
    return H5Literate(group, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, mlres_link_trampoline, &c);
}

/* Where a dataset's raw data lives: 0 compact, 1 contiguous, 2 chunked, 3 virtual, <0 error. */
static inline int mlres_layout(hid_t dcpl) { return (int)H5Pget_layout(dcpl); }
static inline int mlres_external_count(hid_t dcpl) { return H5Pget_external_count(dcpl); }
static inline haddr_t mlres_HADDR_UNDEF(void) { return HADDR_UNDEF; }
#endif
