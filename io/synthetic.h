/* Synthetic checkpoints: real model shapes filled with seeded random weights,
 * for throughput and memory runs without downloading a model.
 *
 * Spec strings (an optional "synthetic:" prefix is ignored) are a comma-
 * separated list: an optional preset first, then key=value overrides.
 *   presets: llama-2-7b, llama-3-8b, llama-3.1-8b, dclm-7b, smollm2-135m, stories260k
 *   keys:    dim, hidden, layers, heads, kv_heads, vocab, head_dim, ctx,
 *            theta, eps, tied (0/1), seed, dtype (f32|bf16|f16)
 * Without a preset, dim, hidden, layers and heads are required (kv_heads
 * defaults to heads, vocab to 32000). Examples: "llama-2-7b,layers=2",
 * "dim=256,hidden=688,layers=4,heads=8,kv_heads=4,vocab=512,seed=7".
 *
 * Weights are deterministic on every machine and for any thread count:
 * element i of a matrix is a normal(0, 0.02) draw made as the centred sum of
 * eight 16-bit uniforms (an Irwin-Hall approximation: kurtosis 2.85, tails cut
 * at 4.9 sd), taken from outputs 2i and 2i+1 of a splitmix64 stream keyed by
 * (seed, canonical tensor name) and evaluated in counter mode, so tensors and
 * parts of tensors are generated in parallel with identical results. Only
 * integer arithmetic and one rounded multiplication are involved.
 * Norm gains are ones. */
#ifndef KG_IO_SYNTHETIC_H
#define KG_IO_SYNTHETIC_H

#include <stdint.h>

#include "io/checkpoint.h"

typedef struct kg_synthetic_spec {
  kg_model_config config; /* shapes and hyper-parameters */
  uint64_t seed;          /* default 0 */
  kg_dtype dtype;         /* KG_DT_BF16 (default), KG_DT_F32 or KG_DT_F16 */
} kg_synthetic_spec;

/* Parses a spec string. Errors (KG_ERR_ARG) name the offending item. */
int kg_synthetic_spec_parse(const char *spec, kg_synthetic_spec *out);

/* Generates the checkpoint (format KG_CKPT_SYNTHETIC; tensors in its arena)
 * using all cores ($KG_THREADS or $OMP_NUM_THREADS limit them). *out is owned
 * by the caller (kg_checkpoint_close). */
int kg_synthetic_checkpoint(const kg_synthetic_spec *spec, kg_checkpoint **out);

/* Seconds and bytes of the last kg_synthetic_checkpoint on this thread (for
 * reporting generation throughput). */
void kg_synthetic_last_timing(double *seconds, double *bytes);

#endif
