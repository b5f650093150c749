#include "probattn_plugin.h"
