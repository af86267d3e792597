#include "model/generate.h"

#include <stdlib.h>
#include <string.h>

#include "io/error.h"

typedef struct step_ctx {
  float *logits; /* [n_seq, vocab] host, last position of each sequence */
  int vocab;
} step_ctx;

static int keep_logits(void *vctx, const int64_t *rows, int64_t n_rows, const float *logits, int vocab) {
  step_ctx *ctx = vctx;
  for (int64_t i = 0; i < n_rows; i++)
    memcpy(ctx->logits + rows[i] * vocab, logits + i * vocab, (size_t)vocab * sizeof(float));
  return 0;
}

int kg_generate_batch(kg_model *m, const int32_t *const *prompts, const int *prompt_lens, int n_seq, int max_new,
                      int eos_id, const kg_sampling *sampling, uint64_t rng_seed, kg_generation *out) {
  int rc = KG_OK;
  const int vocab = m->cfg.vocab_size;
  kg_kv_cache *cache = NULL;
  step_ctx ctx = {NULL, vocab};
  int32_t *step_tokens = NULL, **history = NULL;
  int *hist_len = NULL, *done = NULL;
  kg_rng *rngs = NULL;
  void *scratch = NULL;
  int max_prompt = 0;
  memset(out, 0, sizeof(*out) * (size_t)n_seq);
  if (n_seq <= 0 || max_new < 0) return kg_error(KG_ERR_ARG, "bad generation request");
  for (int s = 0; s < n_seq; s++) {
    if (prompt_lens[s] <= 0) return kg_error(KG_ERR_ARG, "generation needs a non-empty prompt (sequence %d)", s);
    if (prompt_lens[s] > max_prompt) max_prompt = prompt_lens[s];
  }
  const int total = max_prompt + max_new;
  ctx.logits = malloc((size_t)n_seq * vocab * sizeof(float));
  step_tokens = malloc((size_t)n_seq * sizeof(int32_t));
  history = calloc((size_t)n_seq, sizeof(int32_t *));
  hist_len = calloc((size_t)n_seq, sizeof(int));
  done = calloc((size_t)n_seq, sizeof(int));
  rngs = malloc((size_t)n_seq * sizeof(kg_rng));
  scratch = malloc(kg_sampling_scratch_bytes(vocab));
  if (!ctx.logits || !step_tokens || !history || !hist_len || !done || !rngs || !scratch) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory for generation");
    goto done;
  }
  for (int s = 0; s < n_seq; s++) {
    if (!(history[s] = malloc((size_t)total * sizeof(int32_t))) ||
        !(out[s].tokens = malloc((size_t)(max_new ? max_new : 1) * sizeof(int32_t)))) {
      rc = kg_error(KG_ERR_NOMEM, "out of memory for generation");
      goto done;
    }
    kg_rng_seed(&rngs[s], rng_seed + (uint64_t)s);
  }
  if ((rc = kg_kv_cache_create(m, n_seq, total, &cache)) < 0) goto done;

  /* The part every prompt has is prefilled in one pass; after that,
   * position p of every sequence is fed in the same step: its prompt token
   * while the prompt lasts, then its own sampled token. */
  int min_prompt = max_prompt;
  for (int s = 0; s < n_seq; s++) min_prompt = prompt_lens[s] < min_prompt ? prompt_lens[s] : min_prompt;
  const int prefill = min_prompt - 1;
  if (prefill > 0) {
    int32_t *block = malloc((size_t)n_seq * prefill * sizeof(int32_t));
    if (!block) {
      rc = kg_error(KG_ERR_NOMEM, "out of memory for generation");
      goto done;
    }
    for (int s = 0; s < n_seq; s++) {
      memcpy(block + (size_t)s * prefill, prompts[s], (size_t)prefill * sizeof(int32_t));
      memcpy(history[s], prompts[s], (size_t)prefill * sizeof(int32_t));
      hist_len[s] = prefill;
    }
    kg_forward_request pre = {.tokens = block, .n_seq = n_seq, .T = prefill, .cache = cache};
    rc = kg_model_forward(m, &pre);
    free(block);
    if (rc < 0) goto done;
  }
  int remaining = n_seq;
  for (int p = prefill > 0 ? prefill : 0; p < total - 1 && remaining > 0; p++) {
    for (int s = 0; s < n_seq; s++) {
      int32_t tok;
      if (p < prompt_lens[s]) tok = prompts[s][p];
      else tok = hist_len[s] > 0 ? history[s][hist_len[s] - 1] : 0;
      if (p < prompt_lens[s]) history[s][hist_len[s]++] = tok;
      step_tokens[s] = tok;
    }
    kg_forward_request r = {.tokens = step_tokens, .n_seq = n_seq, .T = 1, .cache = cache,
                            .on_logits = keep_logits, .ctx = &ctx};
    if ((rc = kg_model_forward(m, &r)) < 0) goto done;
    for (int s = 0; s < n_seq; s++) {
      if (done[s] || p + 1 < prompt_lens[s]) continue; /* still reading its prompt */
      if (out[s].n_tokens >= max_new) {
        done[s] = 1;
        remaining--;
        continue;
      }
      int32_t next = kg_sample(sampling, &rngs[s], ctx.logits + (size_t)s * vocab, vocab, history[s], hist_len[s],
                               scratch);
      out[s].tokens[out[s].n_tokens++] = next;
      history[s][hist_len[s]++] = next;
      if (next == eos_id || out[s].n_tokens >= max_new) {
        out[s].stopped_at_eos = next == eos_id;
        done[s] = 1;
        remaining--;
      }
    }
  }
done:
  if (rc < 0)
    for (int s = 0; s < n_seq; s++) {
      free(out[s].tokens);
      out[s].tokens = NULL;
      out[s].n_tokens = 0;
    }
  kg_kv_cache_free(cache);
  for (int s = 0; history && s < n_seq; s++) free(history[s]);
  free(history);
  free(hist_len);
  free(done);
  free(rngs);
  free(scratch);
  free(step_tokens);
  free(ctx.logits);
  return rc;
}

int kg_generate(kg_model *m, const int32_t *prompt, int n_prompt, int max_new, int eos_id, const kg_sampling *s,
                uint64_t rng_seed, kg_generation *out) {
  const int32_t *prompts[1] = {prompt};
  int lens[1] = {n_prompt};
  return kg_generate_batch(m, prompts, lens, 1, max_new, eos_id, s, rng_seed, out);
}
