#ifndef PORTCULLIS_CHIREDIS_SHIM_H
#define PORTCULLIS_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
static inline int pc_hiredis_major(void) { return HIREDIS_MAJOR; }
static inline int pc_hiredis_minor(void) { return HIREDIS_MINOR; }
#endif
