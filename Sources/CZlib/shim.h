#ifndef MLRES_CZLIB_SHIM_H
#define MLRES_CZLIB_SHIM_H
#include <zlib.h>
#endif
