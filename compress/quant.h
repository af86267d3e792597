/* Weight quantization: the min-max quantizer of GPTQ's quant.py
 * (Quantizer.find_params with perchannel=True, weight=True) and
 * round-to-nearest (RTN) with it.
 *
 * Per output row (and per group of group_size input columns when
 * group_size > 0):
 *   xmin = min(min(x), 0), xmax = max(max(x), 0)
 *   sym:  xmax = max(|xmin|, xmax); xmin = -xmax when xmin < 0
 *   xmin == xmax == 0 -> xmin = -1, xmax = +1
 *   scale = (xmax - xmin) / maxq, maxq = 2^bits - 1
 *   zero  = sym ? (maxq + 1) / 2 : round(-xmin / scale)
 *   q(x)  = scale * (clamp(round(x / scale) + zero, 0, maxq) - zero)
 * all in float32 with round-half-to-even, as torch computes them, so the
 * results are the reference's bit for bit. Outputs are dequantized
 * ("simulated") float32 weights.
 *
 * Parameters, when asked for, come out as scales[rows * ngroups] and
 * zeros[rows * ngroups] (row-major, ngroups = kg_quant_ngroups(cols, gs)). */
#ifndef KG_COMPRESS_QUANT_H
#define KG_COMPRESS_QUANT_H

#include <math.h>
#include <stdint.h>

typedef struct kg_quant_opts {
  int bits;       /* 2..8 */
  int sym;        /* 0: asymmetric (GPTQ's default for its LLaMA runs), 1: symmetric */
  int group_size; /* <= 0: one parameter set per output row; else groups along input columns */
} kg_quant_opts;

int kg_quant_opts_check(const kg_quant_opts *q, int64_t cols, const char *what);

/* 1 when group_size <= 0, else ceil(cols / group_size). */
int64_t kg_quant_ngroups(int64_t cols, int group_size);

/* Parameters from the extremes of one row or group (the reference's rules
 * after its min/max reductions). */
void kg_quant_params(float xmin, float xmax, int bits, int sym, float *scale, float *zero);

/* The reference's quantize(): dequantized value of x on the grid. */
static inline float kg_quant_value(float x, float scale, float zero, float maxq) {
  float q = rintf(x / scale) + zero;
  q = q < 0.0f ? 0.0f : (q > maxq ? maxq : q);
  return scale * (q - zero);
}

/* RTN: every row (group) gets parameters from its own values and each weight
 * is rounded independently. W is [rows, cols] row-major, replaced in place.
 * scales and zeros are nullable. */
int kg_rtn_quantize(float *W, int64_t rows, int64_t cols, const kg_quant_opts *opts, float *scales, float *zeros);

#endif
