/* The C ABI is header-only; this file exists because a SwiftPM C target needs one source file. */
#include "probattn_plugin.h"

uint32_t probattn_host_abi_version(void) { return PROBATTN_PLUGIN_ABI_VERSION; }
