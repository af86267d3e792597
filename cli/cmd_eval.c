/* kickgrid eval: zero-shot tasks, MMLU and factoid QA scored like
 * lm-evaluation-harness / LLM-KICK, and JS divergence against a dense model. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "evaluate/jsd.h"
#include "evaluate/ppl.h"
#include "evaluate/tasks.h"
#include "io/error.h"
#include "io/log.h"

#define MAX_TASKS 32

static const char usage[] =
    "usage: kickgrid eval --model M --tasks LIST [--against DENSE] [options]\n\n"
    "Scores a model on downstream tasks the way lm-evaluation-harness (zero-shot\n"
    "multiple choice, LAMBADA, MMLU) and LLM-KICK (MMLU generate mode, FreebaseQA,\n"
    "TriviaQA) do; see docs/tasks.md for each task's prompt and metrics.\n\n"
    "options:\n" KG_CLI_MODEL_HELP
    "  --tasks LIST      comma-separated: boolq, piqa, hellaswag, winogrande,\n"
    "                    arc_easy, arc_challenge, openbookqa, lambada, mmlu,\n"
    "                    freebaseqa, triviaqa, js (JS divergence on WikiText-2;\n"
    "                    needs --against), or 'all'\n"
    "  --against DENSE   a dense reference model: adds its scores, the delta,\n"
    "                    and the JS divergence on each task's prompts\n"
    "  --limit N         first N documents per task (MMLU: per subject)\n"
    "  --limit-random    a random subset of N documents (seeded by --seed) instead\n"
    "  --seed S          seed of the random subset (default 0)\n"
    "  --num-fewshot K   few-shot examples (default: 0; MMLU 5)\n"
    "  --fewshot-seed S  the harness's few-shot sampling seed (default 1234)\n"
    "  --mmlu-mode M     loglik (harness, default) or generate (LLM-KICK)\n"
    "  --batch N         sequences per forward pass (default 8)\n"
    "  --bos auto|0|1    BOS before prompts (auto: harness none, LLM-KICK tokenizer default)\n"
    "  --max-len N       longest model input (default: the model's context)\n"
    "  --bootstrap-iters N  LAMBADA perplexity stderr resamples (default 100000)\n"
    "  --js-seqlen N     WikiText-2 window for js (default 1024)\n"
    "  --js-windows N    at most N windows for js (default 16)\n"
    "  --json PATH       also write the results as JSON\n"
    "  --no-prefix-reuse never share context prefixes through the KV cache (every\n"
    "                    request runs whole; scores agree within float tolerance)\n"
    "  --progress        progress lines on stderr\n";

typedef struct eval_opts {
  const char *tasks[MAX_TASKS];
  int n_tasks;
  int want_js;
  const char *against;
  const char *json_path;
  int js_seqlen;
  int js_windows;
  kg_task_spec spec;
} eval_opts;

static int parse_tasks(const char *list, eval_opts *o) {
  char buf[1024];
  snprintf(buf, sizeof(buf), "%s", list);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ') t++;
    if (!*t) continue;
    if (!strcmp(t, "js")) {
      o->want_js = 1;
      continue;
    }
    if (!strcmp(t, "all")) {
      for (size_t i = 0; i < kg_task_count() && o->n_tasks < MAX_TASKS; i++) o->tasks[o->n_tasks++] = kg_task_at(i)->name;
      continue;
    }
    const kg_task_info *info = kg_task_find(t);
    if (!info) return kg_cli_usage_error("eval", "unknown task '%s' (see --help)", t);
    if (o->n_tasks >= MAX_TASKS) return kg_cli_usage_error("eval", "too many tasks");
    o->tasks[o->n_tasks++] = info->name;
  }
  if (o->n_tasks == 0 && !o->want_js) return kg_cli_usage_error("eval", "--tasks names no task");
  return 0;
}

static void fmt_num(char *buf, size_t cap, double v) {
  if (isnan(v)) snprintf(buf, cap, "%9s", "-");
  else snprintf(buf, cap, "%9.4f", v);
}

static void print_row(const char *task, const kg_metric *mt, int64_t n, const kg_metric *dense) {
  char v[32], se[32], dv[32], dd[32];
  fmt_num(v, sizeof(v), mt->value);
  fmt_num(se, sizeof(se), mt->stderr);
  printf("%-16s %-12s %s %s %7lld", task, mt->name, v, se, (long long)n);
  if (dense) {
    fmt_num(dv, sizeof(dv), dense->value);
    fmt_num(dd, sizeof(dd), mt->value - dense->value);
    printf(" %s %s", dv, dd);
  }
  printf("\n");
}

static void print_js(const char *label, const kg_js_result *js) {
  printf("%-16s %-12s %9.6f %9s %7lld   median %.6f  p95 %.6f  max %.6f  top1 %.4f (%lld %s)\n", label, "js_mean",
         js->mean, "-", (long long)js->n_tokens, js->median, js->p95, js->max, js->top1_agree,
         (long long)js->n_windows, strcmp(label, "js wikitext2") ? "prompts" : "windows");
}

static cJSON *metrics_json(const kg_task_result *r) {
  cJSON *m = cJSON_CreateObject();
  for (int i = 0; i < r->n_metrics; i++) {
    cJSON *e = cJSON_AddObjectToObject(m, r->metrics[i].name);
    cJSON_AddNumberToObject(e, "value", r->metrics[i].value);
    if (!isnan(r->metrics[i].stderr)) cJSON_AddNumberToObject(e, "stderr", r->metrics[i].stderr);
  }
  return m;
}

static cJSON *js_json(const kg_js_result *js) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "mean", js->mean);
  cJSON_AddNumberToObject(o, "median", js->median);
  cJSON_AddNumberToObject(o, "p95", js->p95);
  cJSON_AddNumberToObject(o, "max", js->max);
  cJSON_AddNumberToObject(o, "top1_agree", js->top1_agree);
  cJSON_AddNumberToObject(o, "tokens", (double)js->n_tokens);
  cJSON_AddNumberToObject(o, "sequences", (double)js->n_windows);
  cJSON_AddNumberToObject(o, "seconds", js->seconds);
  return o;
}

static cJSON *task_json(const kg_task_result *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "n", (double)r->n);
  cJSON_AddNumberToObject(o, "num_fewshot", r->num_fewshot);
  cJSON_AddNumberToObject(o, "seconds", r->seconds);
  cJSON_AddItemToObject(o, "metrics", metrics_json(r));
  if (r->n_subjects) {
    cJSON *subs = cJSON_AddObjectToObject(o, "subjects");
    for (int s = 0; s < r->n_subjects; s++) {
      cJSON *e = cJSON_AddObjectToObject(subs, r->subjects[s].name);
      cJSON_AddNumberToObject(e, "n", (double)r->subjects[s].n);
      cJSON_AddNumberToObject(e, "acc", r->subjects[s].acc);
      if (!isnan(r->subjects[s].stderr)) cJSON_AddNumberToObject(e, "stderr", r->subjects[s].stderr);
    }
  }
  return o;
}

static int parse_args(int argc, char **argv, kg_cli_model_opts *mo, eval_opts *o) {
  long long v;
  for (int i = 1; i < argc; i++) {
    int used = kg_cli_model_option("eval", argc, argv, &i, mo);
    if (used == 2) return 2;
    if (used) continue;
    const char *a = argv[i];
    if (!strcmp(a, "--limit-random")) {
      o->spec.limit_random = 1;
      continue;
    }
    if (!strcmp(a, "--progress")) {
      o->spec.progress = 1;
      continue;
    }
    if (!strcmp(a, "--no-prefix-reuse")) {
      o->spec.no_prefix_reuse = 1;
      continue;
    }
    if (i + 1 >= argc) return kg_cli_usage_error("eval", "unknown option or missing value: %s", a);
    const char *val = argv[++i];
    if (!strcmp(a, "--tasks")) {
      if (parse_tasks(val, o)) return 2;
    } else if (!strcmp(a, "--against")) o->against = val;
    else if (!strcmp(a, "--json")) o->json_path = val;
    else if (!strcmp(a, "--mmlu-mode")) {
      if (!strcmp(val, "loglik")) o->spec.mmlu_mode = KG_MMLU_LOGLIK;
      else if (!strcmp(val, "generate")) o->spec.mmlu_mode = KG_MMLU_GENERATE;
      else return kg_cli_usage_error("eval", "--mmlu-mode is loglik or generate, not '%s'", val);
    } else if (!strcmp(a, "--bos")) {
      if (!strcmp(val, "auto")) o->spec.add_bos = -1;
      else if (!strcmp(val, "0") || !strcmp(val, "1")) o->spec.add_bos = val[0] - '0';
      else return kg_cli_usage_error("eval", "--bos is auto, 0 or 1, not '%s'", val);
    } else {
      long long lo = 0, hi = 1LL << 40;
      if (!strcmp(a, "--batch") || !strcmp(a, "--js-seqlen") || !strcmp(a, "--js-windows")) lo = 1;
      if (!strcmp(a, "--limit") || !strcmp(a, "--seed") || !strcmp(a, "--num-fewshot") || !strcmp(a, "--batch") ||
          !strcmp(a, "--max-len") || !strcmp(a, "--bootstrap-iters") || !strcmp(a, "--js-seqlen") ||
          !strcmp(a, "--js-windows") || !strcmp(a, "--fewshot-seed")) {
        if (kg_cli_parse_int("eval", a, val, lo, hi, &v)) return 2;
      } else {
        return kg_cli_usage_error("eval", "unknown option %s", a);
      }
      if (!strcmp(a, "--limit")) o->spec.limit = v;
      else if (!strcmp(a, "--seed")) o->spec.seed = (uint64_t)v;
      else if (!strcmp(a, "--fewshot-seed")) o->spec.fewshot_seed = (uint64_t)v;
      else if (!strcmp(a, "--num-fewshot")) o->spec.num_fewshot = (int)v;
      else if (!strcmp(a, "--batch")) o->spec.batch = (int)v;
      else if (!strcmp(a, "--max-len")) o->spec.max_len = (int)v;
      else if (!strcmp(a, "--bootstrap-iters")) o->spec.bootstrap_iters = (int)v;
      else if (!strcmp(a, "--js-seqlen")) o->js_seqlen = (int)v;
      else o->js_windows = (int)v;
    }
  }
  if (!mo->model) return kg_cli_usage_error("eval", "--model is required");
  if (o->n_tasks == 0 && !o->want_js) return kg_cli_usage_error("eval", "--tasks is required");
  if (o->want_js && !o->against) return kg_cli_usage_error("eval", "task 'js' needs --against DENSE");
  return 0;
}

int kg_cmd_eval(int argc, char **argv) {
  kg_cli_model_opts mo = {0};
  eval_opts o = {.js_seqlen = 1024, .js_windows = 16};
  kg_task_spec_default(&o.spec);
  if (kg_cli_wants_help(argc, argv)) {
    fputs(usage, stdout);
    return 0;
  }
  int u = parse_args(argc, argv, &mo, &o);
  if (u) return u;

  kg_backend *be = NULL;
  kg_model *m = NULL, *dense = NULL;
  kg_tokenizer *tok = NULL;
  int32_t *wiki = NULL;
  int64_t n_wiki = 0;
  int status = 0;
  cJSON *root = cJSON_CreateObject(), *jtasks = NULL;
  kg_task_result res, dres;
  memset(&res, 0, sizeof(res));
  memset(&dres, 0, sizeof(dres));
  if (!root) {
    kg_error(KG_ERR_NOMEM, "JSON results");
    return kg_cli_fail("eval");
  }
  cJSON_AddStringToObject(root, "model", mo.model);
  if (o.against) cJSON_AddStringToObject(root, "against", o.against);
  jtasks = cJSON_AddObjectToObject(root, "tasks");
  if (kg_cli_open_model(&mo, &be, &m, &tok) < 0) {
    status = kg_cli_fail("eval");
    goto done;
  }
  if (o.against && kg_model_load(o.against, be, &dense, NULL) < 0) {
    kg_error_context("--against %s: ", o.against);
    status = kg_cli_fail("eval");
    goto done;
  }
  printf("%-16s %-12s %9s %9s %7s%s\n", "task", "metric", "value", "stderr", "n", dense ? "     dense     delta" : "");
  for (int t = 0; t < o.n_tasks; t++) {
    kg_task_spec spec = o.spec;
    spec.task = o.tasks[t];
    if (kg_eval_task(m, tok, &spec, &res) < 0) {
      status = kg_cli_fail("eval");
      goto done;
    }
    cJSON *jt = task_json(&res);
    cJSON_AddItemToObject(jtasks, res.task, jt);
    if (dense) {
      kg_js_result js;
      if (kg_eval_task(dense, tok, &spec, &dres) < 0 || kg_js_task(dense, m, tok, &spec, &js) < 0) {
        status = kg_cli_fail("eval");
        goto done;
      }
      cJSON_AddItemToObject(jt, "dense", task_json(&dres));
      cJSON_AddItemToObject(jt, "js", js_json(&js));
      for (int i = 0; i < res.n_metrics; i++)
        print_row(res.task, &res.metrics[i], res.n, kg_task_result_metric(&dres, res.metrics[i].name));
      char label[48];
      snprintf(label, sizeof(label), "js %s", res.task);
      print_js(label, &js);
      kg_task_result_free(&dres);
    } else {
      for (int i = 0; i < res.n_metrics; i++) print_row(res.task, &res.metrics[i], res.n, NULL);
    }
    fflush(stdout);
    kg_task_result_free(&res);
  }
  if (o.want_js) {
    kg_js_result js;
    if (kg_ppl_dataset_tokens(tok, "wikitext2", o.js_seqlen, &wiki, &n_wiki) < 0 ||
        kg_js_divergence(dense, m, wiki, n_wiki, o.js_seqlen, o.js_windows, &js) < 0) {
      status = kg_cli_fail("eval");
      goto done;
    }
    print_js("js wikitext2", &js);
    cJSON *jj = js_json(&js);
    cJSON_AddNumberToObject(jj, "seqlen", o.js_seqlen);
    cJSON_AddItemToObject(root, "js_wikitext2", jj);
  }
  if (o.json_path) {
    char *text = cJSON_Print(root);
    FILE *f = text ? fopen(o.json_path, "w") : NULL;
    if (!f || fputs(text, f) < 0 || fputc('\n', f) == EOF) {
      kg_error(KG_ERR_IO, "%s: cannot write the JSON results", o.json_path);
      status = kg_cli_fail("eval");
    }
    if (f && fclose(f) != 0 && status == 0) {
      kg_error(KG_ERR_IO, "%s: cannot write the JSON results", o.json_path);
      status = kg_cli_fail("eval");
    }
    free(text);
  }
done:
  kg_task_result_free(&res);
  kg_task_result_free(&dres);
  cJSON_Delete(root);
  free(wiki);
  kg_tokenizer_free(tok);
  kg_model_free(dense);
  kg_model_free(m);
  kg_backend_destroy(be);
  return status;
}
