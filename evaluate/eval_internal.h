/* Shared between evaluate/tasks.c, mmlu.c and qa.c; not a public API. */
#ifndef KG_EVALUATE_EVAL_INTERNAL_H
#define KG_EVALUATE_EVAL_INTERNAL_H

#include "evaluate/loglik.h"
#include "evaluate/tasks.h"

void kg_eval_add_metric(kg_task_result *r, const char *name, double value, double stderr);
/* BOS for a protocol: spec->add_bos when >= 0, else the harness's choice
 * (none) or, for LLM-KICK's scripts, the tokenizer's own default. */
int kg_eval_add_bos(const kg_tokenizer *tok, const kg_task_spec *spec, int llmkick);
void kg_eval_loglik_options(const kg_task_spec *spec, const char *label, kg_loglik_options *o);

/* Encodes one context with several continuations (the context once). ctx
 * is malloc'd; conts[i] are malloc'd; the caller frees all. */
int kg_eval_encode_choices(const kg_tokenizer *tok, const char *context, char *const *conts, int n, int add_bos,
                           int32_t **ctx, int *n_ctx, int32_t **cont_ids, int *n_cont);

int kg_eval_mmlu(kg_model *m, kg_tokenizer *tok, const kg_task_data *d, const kg_task_spec *spec, int k,
                 kg_task_result *res);
int kg_eval_qa(kg_model *m, kg_tokenizer *tok, const kg_task_data *d, const size_t *docs, size_t n,
               const kg_task_spec *spec, int k, kg_task_result *res);

#endif
