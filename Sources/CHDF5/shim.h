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
static inline hid_t mlres_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline hid_t mlres_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t mlres_H5S_ALL(void) { return H5S_ALL; }
static inline unsigned mlres_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned mlres_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline unsigned mlres_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned mlres_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline size_t mlres_H5T_VARIABLE(void) { return H5T_VARIABLE; }
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

/* Newest on-disk format: superblock v3 and object headers v2 carry metadata checksums,
   so a flipped bit in the file structure is detected instead of being trusted. */
static inline herr_t mlres_set_latest_format(hid_t fapl) {
    return H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
}
#endif
