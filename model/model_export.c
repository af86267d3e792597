/* A model's host weights as canonical checkpoint tensors, for writing a
 * Hugging Face directory (kickgrid prune --out). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/safetensors.h"
#include "model/model.h"

static int add(kg_tensor_ref *refs, size_t *n, char **names, const char *name, const float *data, int64_t d0,
               int64_t d1) {
  char *copy = strdup(name);
  if (!copy) return kg_error(KG_ERR_NOMEM, "out of memory");
  names[*n] = copy;
  kg_tensor_ref *r = &refs[(*n)++];
  memset(r, 0, sizeof(*r));
  r->name = copy;
  r->dtype = KG_DT_F32;
  r->ndim = d1 > 0 ? 2 : 1;
  r->shape[0] = d0;
  r->shape[1] = d1 > 0 ? d1 : 0;
  r->data = data;
  r->nbytes = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1) * sizeof(float);
  return KG_OK;
}

int kg_model_save_hf(const kg_model *m, const char *dir, kg_dtype dtype) {
  const kg_model_config *c = &m->cfg;
  const size_t cap = 3 + (size_t)c->n_layers * (KG_LIN_COUNT + 4);
  kg_tensor_ref *refs = calloc(cap, sizeof(*refs));
  char **names = calloc(cap, sizeof(*names));
  size_t n = 0;
  char name[256];
  int rc = KG_OK;
  if (!refs || !names) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto done;
  }
  if ((rc = add(refs, &n, names, "model.embed_tokens.weight", m->embed, c->vocab_size, c->dim)) < 0) goto done;
  for (int l = 0; l < c->n_layers; l++) {
    const kg_block *b = &m->blocks[l];
    snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", l);
    if ((rc = add(refs, &n, names, name, b->attn_norm, c->dim, 0)) < 0) goto done;
    snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", l);
    if ((rc = add(refs, &n, names, name, b->ffn_norm, c->dim, 0)) < 0) goto done;
    for (int id = 0; id < KG_LIN_COUNT; id++) {
      snprintf(name, sizeof(name), "model.layers.%d.%s.weight", l, kg_linear_hf_name(id));
      if ((rc = add(refs, &n, names, name, b->lin[id].w, b->lin[id].rows, b->lin[id].cols)) < 0) goto done;
    }
    if (b->q_norm) {
      snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_norm.weight", l);
      if ((rc = add(refs, &n, names, name, b->q_norm, (int64_t)c->n_heads * c->head_dim, 0)) < 0) goto done;
      snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_norm.weight", l);
      if ((rc = add(refs, &n, names, name, b->k_norm, (int64_t)c->n_kv_heads * c->head_dim, 0)) < 0) goto done;
    }
  }
  if ((rc = add(refs, &n, names, "model.norm.weight", m->final_norm, c->dim, 0)) < 0) goto done;
  if (!c->tied_embeddings && (rc = add(refs, &n, names, "lm_head.weight", m->lm_head, c->vocab_size, c->dim)) < 0)
    goto done;
  rc = kg_hf_write(dir, c, refs, n, dtype, (size_t)5 << 30);
done:
  for (size_t i = 0; names && i < n; i++) free(names[i]);
  free(names);
  free(refs);
  return rc;
}
