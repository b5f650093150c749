/* The C ABI is header-only, except for the ABI version symbol below. */
#include "probattn_plugin.h"

/* Every target that depends on CProbattnPlugin links this object, Swift plugins included. Swift has no way to export
 * a data symbol under a C name, so the ABI version a Swift plugin exports is this weak definition, compiled with the
 * header the plugin was built against. A C plugin defines the symbol itself (a strong definition wins at link time). */
__attribute__((weak, visibility("default")))
const uint32_t probattn_plugin_abi_version = PROBATTN_PLUGIN_ABI_VERSION;
