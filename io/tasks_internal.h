/* Shared between io/tasks*.c; not part of the public API. */
#ifndef KG_IO_TASKS_INTERNAL_H
#define KG_IO_TASKS_INTERNAL_H

#include <stddef.h>

#include "io/tasks.h"

/* Arena copies (NULL with kg_error set when out of memory). */
char *kg_tasks_strndup(kg_task_data *d, const char *s, size_t n);
char *kg_tasks_strdup(kg_task_data *d, const char *s);
char *kg_tasks_concat(kg_task_data *d, const char *a, const char *b);

/* Appends an empty document (subject -1, gold -1) to the evaluation split
 * (fewshot == 0) or the few-shot split; returns it or NULL (kg_error set). */
kg_task_doc *kg_tasks_new_doc(kg_task_data *d, int fewshot);

int kg_tasks_load_jsonl(kg_task_data *d, const char *path);
int kg_tasks_load_hellaswag(kg_task_data *d, const char *path);
int kg_tasks_load_mmlu(kg_task_data *d, const char *dir);

/* HellaSwag context as the harness writes it, from llama.cpp's line
 * "label: ctx" (see docs/tasks.md): lm-eval preprocess plus the
 * ctx_b.capitalize() that llama.cpp's extraction dropped. malloc'd. */
char *kg_tasks_hellaswag_query(const char *line);

#endif
