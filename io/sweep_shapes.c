/* Model shapes known before any weights are loaded, from a synthetic spec
 * (io/synthetic.h) or a model alias; files are read with kg_checkpoint_open
 * (io/sweep_validate.c). They feed the context-length checks and
 * `kickgrid plan`'s cost estimate. */
#include <strings.h>

#include "io/error.h"
#include "io/sweep_internal.h"
#include "io/synthetic.h"

/* The presets of io/synthetic.h, only to suggest a near miss; the parser
 * there decides what is valid. */
static const char *const k_presets[] = {"llama-2-7b", "llama-3-8b", "llama-3.1-8b", "dclm-7b",
                                        "smollm2-135m", "stories260k", NULL};

/* Alias -> the synthetic preset with the same architecture. */
static const char *const k_aliases[][2] = {{"smollm2", "smollm2-135m"}, {"stories260K", "stories260k"}};

const char *const *kg_sweep_synthetic_names(void) { return k_presets; }

int kg_sweep_known_shape(const char *name, kg_model_config *out) {
  for (size_t a = 0; a < sizeof k_aliases / sizeof k_aliases[0]; a++)
    if (!strcasecmp(name, k_aliases[a][0])) name = k_aliases[a][1];
  kg_synthetic_spec spec;
  KG_TRY(kg_synthetic_spec_parse(name, &spec));
  *out = spec.config;
  return KG_OK;
}
