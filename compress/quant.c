#include "compress/quant.h"

#include "compress/masks.h"
#include "io/error.h"

int kg_quant_opts_check(const kg_quant_opts *q, int64_t cols, const char *what) {
  if (!q) return kg_error(KG_ERR_ARG, "%s: no quantizer options", what);
  if (q->bits < 2 || q->bits > 8) return kg_error(KG_ERR_ARG, "%s: %d bits is outside 2..8", what, q->bits);
  if (q->group_size > 0 && q->group_size > cols)
    return kg_error(KG_ERR_ARG, "%s: group size %d exceeds the %lld input columns", what, q->group_size,
                    (long long)cols);
  return KG_OK;
}

int64_t kg_quant_ngroups(int64_t cols, int group_size) {
  return group_size <= 0 ? 1 : (cols + group_size - 1) / group_size;
}

void kg_quant_params(float xmin, float xmax, int bits, int sym, float *scale, float *zero) {
  const float maxq = (float)((1 << bits) - 1);
  if (xmin > 0.0f) xmin = 0.0f;
  if (xmax < 0.0f) xmax = 0.0f;
  if (sym) {
    if (-xmin > xmax) xmax = -xmin;
    if (xmin < 0.0f) xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  *scale = (xmax - xmin) / maxq;
  *zero = sym ? (maxq + 1.0f) / 2.0f : rintf(-xmin / *scale);
}

int kg_rtn_quantize(float *W, int64_t rows, int64_t cols, const kg_quant_opts *opts, float *scales, float *zeros) {
  if (!W || rows <= 0 || cols <= 0) return kg_error(KG_ERR_ARG, "rtn: bad arguments (%lldx%lld)", (long long)rows, (long long)cols);
  KG_TRY(kg_quant_opts_check(opts, cols, "rtn"));
  KG_TRY(kg_check_finite(W, rows * cols, "rtn: weight"));
  const int64_t gs = opts->group_size > 0 ? opts->group_size : cols;
  const int64_t ng = kg_quant_ngroups(cols, opts->group_size);
  const float maxq = (float)((1 << opts->bits) - 1);
  for (int64_t r = 0; r < rows; r++) {
    float *w = W + r * cols;
    for (int64_t g = 0; g < ng; g++) {
      const int64_t c0 = g * gs, c1 = c0 + gs < cols ? c0 + gs : cols;
      float lo = w[c0], hi = w[c0];
      for (int64_t c = c0 + 1; c < c1; c++) {
        if (w[c] < lo) lo = w[c];
        if (w[c] > hi) hi = w[c];
      }
      float scale, zero;
      kg_quant_params(lo, hi, opts->bits, opts->sym, &scale, &zero);
      for (int64_t c = c0; c < c1; c++) w[c] = kg_quant_value(w[c], scale, zero, maxq);
      if (scales) scales[r * ng + g] = scale;
      if (zeros) zeros[r * ng + g] = zero;
    }
  }
  return KG_OK;
}
