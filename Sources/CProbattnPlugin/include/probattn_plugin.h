/*
 * probattn_plugin.h: the C ABI between the probattn host (daemon, CLI, tests) and attention plugins.
 *
 * A plugin is a shared object (.so) in the plugin folder. The host dlopen()s it (RTLD_NOW | RTLD_LOCAL), reads the
 * exported symbol `probattn_plugin_abi_version` (a uint32_t that must equal PROBATTN_PLUGIN_ABI_VERSION), then calls
 * the exported entry `probattn_plugin_register(registrar)`, in which the plugin calls
 * `registrar->register_variant(registrar->host, &variant)` once per variant it provides. The host never dlclose()s a
 * plugin. Nothing but the plain C types below crosses the boundary, so a plugin may be written in C, in Swift
 * (@_cdecl exports), or in anything that can export C symbols. docs/PLUGINS.md is the guide for plugin authors;
 * Plugins/Uniform is a complete plugin in C.
 *
 * Layout conventions: every matrix is row-major float32, one row per token or unit:
 *   queries  H x C      token features (the queries q_i)
 *   keys     M x C      unit keys (zeta_j); M may differ from H
 *   values   M x Cv     unit values (mu_j)
 *   fixed    H x (Cv+1) fixed (observed) token values; column Cv is the indicator m_i; NULL when none.
 *            m_i is 1 for a fixed token and 0 for a free one; values in (0,1) are a soft observation weight
 *            (a token observed with partial confidence) and variants treat m_i as a weight wherever it appears.
 *            Value channels of a token with m_i == 0 carry no information and must be ignored.
 *   output   H x Cv     token values returned by the variant
 *
 * Lifetime: every pointer the host passes is valid only during the call. `register_variant` copies the variant's
 * name, summary and option specs before it returns, so they only need to live until then (static storage is the
 * simplest); the `attend` function pointer is kept and called for the life of the process (the host never unloads a
 * plugin).
 *
 * Exporting the ABI version: a C plugin defines
 *     const uint32_t probattn_plugin_abi_version = PROBATTN_PLUGIN_ABI_VERSION;
 * A Swift plugin cannot name a data symbol, so it depends on the CProbattnPlugin target, whose probattn_plugin.c
 * carries a weak definition of that symbol with the version of this header; a C plugin's own (strong) definition
 * takes precedence over it when both are linked.
 *
 * Threading: `attend` may be called concurrently from several threads (different images); it must be reentrant and
 * must not keep state between calls.
 *
 * What the probattn host checks before calling `attend` (so a plugin may rely on it): H, M, C, Cv > 0; every buffer
 * has its documented size and holds only finite numbers; m_i lies in [0, 1]; the grid, when given, has
 * rows * cols == H; the variant's PROBATTN_NEEDS_* requirements hold; every option is present with its spec's type.
 * Range checks on option values (an odd window, a positive width) are the plugin's job: fail with a message that
 * names the option. A plugin must not abort the process on bad input.
 */
#ifndef PROBATTN_PLUGIN_H
#define PROBATTN_PLUGIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Bump when any struct or function signature in this header changes.
 *  Version 2 appended `weights` and `weights_written` to probattn_attend_output (after `error`). Version 3 appended
 *  `capabilities` and `validate_options` to probattn_variant (after `attend`). Version 4 appended `threads` to
 *  probattn_attend_input (after `flags`). Nothing before them moved: the host zero-fills the output struct, always
 *  fills the whole input struct (older plugins read only its first fields) and reads the variant's version-3 fields
 *  only from plugins exporting version 3 or later, so a host of version 4 also loads version-1, -2 and -3 plugins;
 *  those of versions 1 and 2 are treated as: propagation needs M == H, similarity by dot product, no W, no
 *  validate_options. PROBATTN_PLUGIN_ABI_OLDEST_SUPPORTED is the oldest version the host accepts. */
#define PROBATTN_PLUGIN_ABI_VERSION 4u
#define PROBATTN_PLUGIN_ABI_OLDEST_SUPPORTED 1u

/** Names of the two symbols every plugin exports. */
#define PROBATTN_PLUGIN_ABI_SYMBOL "probattn_plugin_abi_version"
#define PROBATTN_PLUGIN_ENTRY_SYMBOL "probattn_plugin_register"

/** The type of an option value. */
typedef enum probattn_option_type {
    PROBATTN_OPTION_INT = 1,    /* int64 */
    PROBATTN_OPTION_FLOAT = 2,  /* double */
    PROBATTN_OPTION_BOOL = 3,   /* 0 or 1, stored in int_value */
    PROBATTN_OPTION_STRING = 4  /* NUL-terminated UTF-8 */
} probattn_option_type;

/** One option a variant accepts, as registered by the plugin (shown by `probattnd plugins`). */
typedef struct probattn_option_spec {
    const char *name;            /* lower_snake_case, unique within the variant */
    probattn_option_type type;
    const char *default_value;   /* the default, written as it would be in YAML ("0.5", "true", "3", "textbook") */
    const char *meaning;         /* one line for operators */
} probattn_option_spec;

/** One option value passed by the host. The host passes every option of the variant, defaults filled in, already
 *  type-checked against the spec, in the order the spec lists them. */
typedef struct probattn_option_value {
    const char *name;
    probattn_option_type type;
    int64_t int_value;           /* INT and BOOL */
    double float_value;          /* FLOAT */
    const char *string_value;    /* STRING */
} probattn_option_value;

/** Flags in probattn_attend_input.flags. */
enum {
    /** The keys passed in were already adapted (for example cached from an earlier call on the same image):
     *  a variant that adapts keys must not adapt them again. */
    PROBATTN_KEYS_ALREADY_ADAPTED = 1u << 0
};

/** What the host gives a variant for one attention call (one image, one head). */
typedef struct probattn_attend_input {
    int64_t tokens;              /* H */
    int64_t units;               /* M */
    int64_t channels;            /* C */
    int64_t value_channels;      /* Cv */
    const float *queries;        /* H x C */
    const float *keys;           /* M x C */
    const float *values;         /* M x Cv */
    const float *fixed;          /* H x (Cv+1) or NULL */
    int64_t grid_rows;           /* tokens lie on a grid_rows x grid_cols grid (row-major) when both are > 0; */
    int64_t grid_cols;           /* then rows * cols == H. 0 when tokens have no grid. */
    const probattn_option_value *options;
    int64_t option_count;
    uint32_t flags;              /* PROBATTN_* flags above */
    /* ABI >= 4. The most threads this call may use (>= 1): the host's compute budget for it. A variant that
     * parallelises cuts its work into chunks that do not depend on this number and runs at most this many at once,
     * so that its output is the same for every value. Plugins of older versions never read it. */
    uint32_t threads;
} probattn_attend_input;

/** Where a variant writes its results. The host allocates every buffer. */
typedef struct probattn_attend_output {
    float *token_values;         /* H x Cv, always written */
    float *adapted_keys;         /* M x C; write the adapted keys here and set keys_adapted = 1 if the variant adapts them */
    float *adapted_values;       /* M x Cv; write the adapted values here and set values_adapted = 1 if it adapts them */
    int32_t keys_adapted;
    int32_t values_adapted;
    char error[256];             /* on failure: a NUL-terminated message for the operator */
    /* ABI >= 2. H x M, or NULL when the host does not ask. The host asks once per image (when it prepares the image)
     * so that it can spread feedback through the mixture itself, many times per click, without calling the variant
     * again. A variant writes here the token-to-unit weights W of its output and sets weights_written = 1 only when
     * both hold:
     *   - W depends on the queries and keys alone (not on values nor on `fixed`), and these are the weights after
     *     any key adaptation of this call;
     *   - for every `fixed` input its token values are the two-hop mixture propagation through W (spec 1.7):
     *       mu_j = sum_i W_ij m_i v*_i / sum_i W_ij m_i,   output_i = sum_j W_ij mu_j
     *     (no value prior, no clamping), and the plain output sum_j W_ij values_j when `fixed` is NULL.
     * Otherwise it leaves weights_written at 0 (the default) and the host calls `attend` for every propagation. */
    float *weights;
    int32_t weights_written;
} probattn_attend_output;

/** Requirements a variant states about its inputs. */
enum {
    PROBATTN_NEEDS_GRID = 1u << 0,        /* needs grid_rows/grid_cols (neighbourhood, context pooling) */
    PROBATTN_NEEDS_UNITS_EQUAL_TOKENS = 1u << 1  /* needs M == H (unit j sits at token j) */
};

/** What a variant is (ABI >= 3): the host chooses how to run it from these flags, never from its name. */
enum {
    /** Value propagation (a call with `fixed`) needs M == H: the variant puts unit j at token j (label
     *  propagation). The adapter then uses one unit per token (`unit_stride: 1`), and validation refuses another
     *  stride. */
    PROBATTN_PROPAGATION_NEEDS_UNITS_EQUAL_TOKENS = 1u << 0,
    /** The similarity comes from distances between queries and keys (an RBF form, as probabilistic attention), not
     *  from dot products: the adapter hands it the encoder's features as they are instead of a distance embedding. */
    PROBATTN_COMPARES_BY_DISTANCE = 1u << 1,
    /** The variant can write its token-to-unit weights W (probattn_attend_output.weights) when asked; the host asks
     *  only variants that say so. */
    PROBATTN_GIVES_WEIGHTS = 1u << 2
};

/** Checks option values beyond their types (ranges, an odd window). Called by `probattnd validate`, on reload and
 *  before a pipeline is built, with every option (defaults filled in, as for `attend`). Returns 0 when they are
 *  valid; otherwise non-zero, with a one-line NUL-terminated message naming the option in `error` (at most
 *  `error_capacity` bytes). Must be reentrant and must not keep state. */
typedef int32_t (*probattn_validate_options_fn)(const probattn_option_value *options, int64_t option_count,
                                                char *error, int64_t error_capacity);

/** One attention variant. */
typedef struct probattn_variant {
    const char *name;            /* the `type:` in config, lower_snake_case, unique across loaded plugins */
    const char *summary;         /* one line */
    const probattn_option_spec *options;
    int32_t option_count;
    uint32_t requirements;       /* PROBATTN_NEEDS_* */
    /** Runs attention. Returns 0 on success; on failure, non-zero with out->error set. Must be reentrant. */
    int32_t (*attend)(const probattn_attend_input *input, probattn_attend_output *output);
    /* ABI >= 3. */
    uint32_t capabilities;       /* PROBATTN_PROPAGATION_NEEDS_UNITS_EQUAL_TOKENS | PROBATTN_COMPARES_BY_DISTANCE | ... */
    probattn_validate_options_fn validate_options;   /* may be NULL: no checks beyond the option types */
} probattn_variant;

/** Passed to the plugin's entry. register_variant copies what it needs; it returns 0 when the variant was accepted,
 *  non-zero when it was refused (a name already taken by another file, an empty name, an option whose default does
 *  not parse as its type); the host reports refusals as a load failure of the file, and a plugin may ignore the
 *  result. register_variant may only be called during probattn_plugin_register. */
typedef struct probattn_registrar {
    void *host;
    int32_t (*register_variant)(void *host, const probattn_variant *variant);
} probattn_registrar;

/* What a plugin exports (declared here so that C plugins get the right signatures):
 *   const uint32_t probattn_plugin_abi_version = PROBATTN_PLUGIN_ABI_VERSION;
 *   int32_t probattn_plugin_register(const probattn_registrar *registrar);   returns 0 on success */
typedef int32_t (*probattn_plugin_register_fn)(const probattn_registrar *registrar);

#ifdef __cplusplus
}
#endif

#endif /* PROBATTN_PLUGIN_H */
