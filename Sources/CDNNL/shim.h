#ifndef MLRES_CDNNL_SHIM_H
#define MLRES_CDNNL_SHIM_H
#include <oneapi/dnnl/dnnl.h>
#endif
