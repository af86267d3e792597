#include "io/dtype.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "io/error.h"

/* Block and checkpoint bytes are little-endian; the bulk paths copy them as-is. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kickgrid assumes a little-endian host"
#endif

/* ggml block sizes: QK = 32 for the legacy quants, QK_K = 256 for K-quants. */
#define QK 32
#define QK_K 256

typedef struct dtype_info {
  const char *name;
  int64_t block_elems;
  size_t block_bytes;
  int float_convertible;
} dtype_info;

static const dtype_info dtype_table[KG_DT_COUNT] = {
    [KG_DT_F32] = {"f32", 1, 4, 1},
    [KG_DT_F16] = {"f16", 1, 2, 1},
    [KG_DT_BF16] = {"bf16", 1, 2, 1},
    [KG_DT_F64] = {"f64", 1, 8, 1},
    [KG_DT_I8] = {"i8", 1, 1, 0},
    [KG_DT_I16] = {"i16", 1, 2, 0},
    [KG_DT_I32] = {"i32", 1, 4, 0},
    [KG_DT_I64] = {"i64", 1, 8, 0},
    /* d(f16) + 16 bytes of nibbles */
    [KG_DT_Q4_0] = {"q4_0", QK, 2 + QK / 2, 1},
    /* d, m (f16) + nibbles */
    [KG_DT_Q4_1] = {"q4_1", QK, 4 + QK / 2, 1},
    /* d + 32 high bits + nibbles */
    [KG_DT_Q5_0] = {"q5_0", QK, 2 + 4 + QK / 2, 1},
    [KG_DT_Q5_1] = {"q5_1", QK, 4 + 4 + QK / 2, 1},
    [KG_DT_Q8_0] = {"q8_0", QK, 2 + QK, 1},
    /* scales[16] + qs[64] + d + dmin */
    [KG_DT_Q2_K] = {"q2_k", QK_K, QK_K / 16 + QK_K / 4 + 4, 1},
    /* hmask[32] + qs[64] + scales[12] + d */
    [KG_DT_Q3_K] = {"q3_k", QK_K, QK_K / 8 + QK_K / 4 + 12 + 2, 1},
    /* d + dmin + scales[12] + qs[128] */
    [KG_DT_Q4_K] = {"q4_k", QK_K, 4 + 12 + QK_K / 2, 1},
    /* d + dmin + scales[12] + qh[32] + qs[128] */
    [KG_DT_Q5_K] = {"q5_k", QK_K, 4 + 12 + QK_K / 8 + QK_K / 2, 1},
    /* ql[128] + qh[64] + scales[16] + d */
    [KG_DT_Q6_K] = {"q6_k", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2, 1},
    /* d(f32) + qs[256] + bsums[16] (int16) */
    [KG_DT_Q8_K] = {"q8_k", QK_K, 4 + QK_K + 2 * (QK_K / 16), 1},
};

static int dtype_valid(kg_dtype t) { return (int)t >= 0 && t < KG_DT_COUNT; }

const char *kg_dtype_name(kg_dtype t) { return dtype_valid(t) ? dtype_table[t].name : "invalid"; }

int kg_dtype_from_name(const char *name, kg_dtype *out) {
  for (int t = 0; t < KG_DT_COUNT; t++) {
    if (strcasecmp(name, dtype_table[t].name) == 0) {
      *out = (kg_dtype)t;
      return KG_OK;
    }
  }
  return KG_ERR_ARG;
}

int64_t kg_dtype_block_elems(kg_dtype t) { return dtype_valid(t) ? dtype_table[t].block_elems : 0; }
size_t kg_dtype_block_bytes(kg_dtype t) { return dtype_valid(t) ? dtype_table[t].block_bytes : 0; }
int kg_dtype_is_float_convertible(kg_dtype t) { return dtype_valid(t) && dtype_table[t].float_convertible; }

size_t kg_dtype_row_bytes(kg_dtype t, int64_t n) {
  if (!dtype_valid(t) || n < 0) return 0;
  int64_t be = dtype_table[t].block_elems;
  if (n % be != 0) return 0;
  uint64_t blocks = (uint64_t)(n / be);
  uint64_t bb = dtype_table[t].block_bytes;
  if (blocks != 0 && bb > SIZE_MAX / blocks) return 0;
  return (size_t)(blocks * bb);
}

/* ---- scalar conversions ---- */

static inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static inline float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float kg_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    /* zero or subnormal: mant * 2^-24 is exact in float32 */
    float v = (float)mant * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t kg_f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) {
    if (a == 0x7f800000u) return sign | 0x7c00u;
    /* NaN: keep the top payload bits and force the quiet bit so it stays NaN */
    return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  if (a >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds to infinity */
  if (a < 0x38800000u) {
    /* below the smallest normal half (2^-14): subnormal result in units of 2^-24 */
    if (a <= 0x33000000u) return sign; /* <= 2^-25: ties to even give zero */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - (a >> 23);
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t r = (((a >> 23) - 112u) << 10) | ((a >> 13) & 0x3ffu);
  uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
  return (uint16_t)(sign | r);
}

float kg_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t kg_f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* f16 -> f32 for whole tensors goes through a table: tensors of billions of
 * f16 values are converted at load and the branchy scalar path is slow. */
static float f16_table[65536];
static pthread_once_t f16_table_once = PTHREAD_ONCE_INIT;
static void f16_table_init(void) {
  for (uint32_t i = 0; i < 65536; i++) f16_table[i] = kg_f16_to_f32((uint16_t)i);
}

static inline uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline float rdh(const unsigned char *p) { return f16_table[rd16(p)]; }

/* ---- ggml block formats ---- */

static void deq_q4_0(const unsigned char *b, float *y) {
  float d = rdh(b);
  const unsigned char *qs = b + 2;
  for (int j = 0; j < QK / 2; j++) {
    y[j] = (float)((qs[j] & 0x0f) - 8) * d;
    y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
  }
}

static void deq_q4_1(const unsigned char *b, float *y) {
  float d = rdh(b), m = rdh(b + 2);
  const unsigned char *qs = b + 4;
  for (int j = 0; j < QK / 2; j++) {
    y[j] = (float)(qs[j] & 0x0f) * d + m;
    y[j + QK / 2] = (float)(qs[j] >> 4) * d + m;
  }
}

/* Q5: the fifth bit of value j (0..31) is bit j of the 32-bit qh word. */
static void deq_q5_0(const unsigned char *b, float *y) {
  float d = rdh(b);
  uint32_t qh = rd32(b + 2);
  const unsigned char *qs = b + 6;
  for (int j = 0; j < QK / 2; j++) {
    int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
    int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
    y[j] = (float)(lo - 16) * d;
    y[j + QK / 2] = (float)(hi - 16) * d;
  }
}

static void deq_q5_1(const unsigned char *b, float *y) {
  float d = rdh(b), m = rdh(b + 2);
  uint32_t qh = rd32(b + 4);
  const unsigned char *qs = b + 8;
  for (int j = 0; j < QK / 2; j++) {
    int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
    int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
    y[j] = (float)lo * d + m;
    y[j + QK / 2] = (float)hi * d + m;
  }
}

static void deq_q8_0(const unsigned char *b, float *y) {
  float d = rdh(b);
  const int8_t *qs = (const int8_t *)(b + 2);
  for (int j = 0; j < QK; j++) y[j] = (float)qs[j] * d;
}

/* Q2_K: 16 sub-blocks of 16 values; each scale byte holds a 4-bit scale (low)
 * and a 4-bit min (high). Values are 2-bit fields of qs, four per byte: for
 * each 128-value half, byte l of the 32-byte slice feeds values l, l+32,
 * l+64, l+96 through shifts 0, 2, 4, 6. */
static void deq_q2_k(const unsigned char *b, float *y) {
  const unsigned char *scales = b;
  const unsigned char *qs = b + 16;
  float d = rdh(b + 80), dmin = rdh(b + 82);
  int is = 0;
  for (int half = 0; half < 2; half++) {
    const unsigned char *q = qs + 32 * half;
    for (int shift = 0; shift < 8; shift += 2) {
      for (int part = 0; part < 2; part++) {
        unsigned char sc = scales[is++];
        float dl = d * (float)(sc & 0x0f), ml = dmin * (float)(sc >> 4);
        for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * part] >> shift) & 3) - ml;
      }
    }
  }
}

/* Q3_K: 6-bit signed scales (offset 32) packed into 12 bytes: low nibbles in
 * bytes 0..7 (scales 0..7 low, 8..15 high nibble), top two bits in bytes
 * 8..11. The third value bit comes from hmask, with a cleared bit meaning -4. */
static int q3k_scale(const unsigned char *s, int j) {
  int low = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
  int high = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
  return (low | (high << 4)) - 32;
}

static void deq_q3_k(const unsigned char *b, float *y) {
  const unsigned char *hmask = b;
  const unsigned char *qs = b + 32;
  const unsigned char *sc = b + 96;
  float d = rdh(b + 108);
  int is = 0;
  unsigned m = 1;
  for (int half = 0; half < 2; half++) {
    const unsigned char *q = qs + 32 * half;
    for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
      for (int part = 0; part < 2; part++) {
        float dl = d * (float)q3k_scale(sc, is++);
        for (int l = 0; l < 16; l++) {
          int idx = l + 16 * part;
          int v = ((q[idx] >> shift) & 3) - ((hmask[idx] & m) ? 0 : 4);
          *y++ = dl * (float)v;
        }
      }
    }
  }
}

/* Q4_K/Q5_K: 8 sub-blocks of 32 values with 6-bit scale and min each, packed
 * in 12 bytes: entries 0..3 in the low 6 bits of bytes 0..3 (scale) and 4..7
 * (min); entries 4..7 take their low nibble from bytes 8..11 and their top two
 * bits from the spare high bits of bytes 0..7. */
static void k4_scale_min(const unsigned char *s, int j, int *scale, int *min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

static void deq_q4_k(const unsigned char *b, float *y) {
  float d = rdh(b), dmin = rdh(b + 2);
  const unsigned char *sc = b + 4;
  const unsigned char *q = b + 16;
  for (int j = 0; j < 8; j += 2, q += 32) {
    int s0, m0, s1, m1;
    k4_scale_min(sc, j, &s0, &m0);
    k4_scale_min(sc, j + 1, &s1, &m1);
    float d0 = d * (float)s0, n0 = dmin * (float)m0;
    float d1 = d * (float)s1, n1 = dmin * (float)m1;
    for (int l = 0; l < 32; l++) *y++ = d0 * (float)(q[l] & 0x0f) - n0;
    for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] >> 4) - n1;
  }
}

static void deq_q5_k(const unsigned char *b, float *y) {
  float d = rdh(b), dmin = rdh(b + 2);
  const unsigned char *sc = b + 4;
  const unsigned char *qh = b + 16;
  const unsigned char *q = b + 48;
  unsigned u1 = 1, u2 = 2;
  for (int j = 0; j < 8; j += 2, q += 32, u1 <<= 2, u2 <<= 2) {
    int s0, m0, s1, m1;
    k4_scale_min(sc, j, &s0, &m0);
    k4_scale_min(sc, j + 1, &s1, &m1);
    float d0 = d * (float)s0, n0 = dmin * (float)m0;
    float d1 = d * (float)s1, n1 = dmin * (float)m1;
    for (int l = 0; l < 32; l++) *y++ = d0 * (float)((q[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - n0;
    for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - n1;
  }
}

/* Q6_K: 16 sub-blocks of 16 values with int8 scales; a 6-bit value is a
 * nibble of ql plus two bits of qh, minus 32. */
static void deq_q6_k(const unsigned char *b, float *y) {
  const unsigned char *ql = b;
  const unsigned char *qh = b + 128;
  const int8_t *sc = (const int8_t *)(b + 192);
  float d = rdh(b + 208);
  for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
    for (int l = 0; l < 32; l++) {
      int is = l / 16;
      int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * (float)sc[is] * (float)q1;
      y[l + 32] = d * (float)sc[is + 2] * (float)q2;
      y[l + 64] = d * (float)sc[is + 4] * (float)q3;
      y[l + 96] = d * (float)sc[is + 6] * (float)q4;
    }
  }
}

static void deq_q8_k(const unsigned char *b, float *y) {
  float d = bits_f32(rd32(b));
  const int8_t *qs = (const int8_t *)(b + 4);
  for (int j = 0; j < QK_K; j++) y[j] = d * (float)qs[j];
}

typedef void (*block_fn)(const unsigned char *block, float *out);

static block_fn block_decoder(kg_dtype t) {
  switch (t) {
  case KG_DT_Q4_0: return deq_q4_0;
  case KG_DT_Q4_1: return deq_q4_1;
  case KG_DT_Q5_0: return deq_q5_0;
  case KG_DT_Q5_1: return deq_q5_1;
  case KG_DT_Q8_0: return deq_q8_0;
  case KG_DT_Q2_K: return deq_q2_k;
  case KG_DT_Q3_K: return deq_q3_k;
  case KG_DT_Q4_K: return deq_q4_k;
  case KG_DT_Q5_K: return deq_q5_k;
  case KG_DT_Q6_K: return deq_q6_k;
  case KG_DT_Q8_K: return deq_q8_k;
  default: return NULL;
  }
}

int kg_dequantize(kg_dtype t, const void *src, float *dst, int64_t n) {
  if (!kg_dtype_is_float_convertible(t))
    return kg_error(KG_ERR_UNSUPPORTED, "cannot convert %s values to float", kg_dtype_name(t));
  if (n < 0 || n % dtype_table[t].block_elems != 0)
    return kg_error(KG_ERR_ARG, "%lld %s values are not a whole number of %lld-value blocks", (long long)n,
                    kg_dtype_name(t), (long long)dtype_table[t].block_elems);
  const unsigned char *p = src;
  switch (t) {
  case KG_DT_F32: memmove(dst, src, (size_t)n * 4); return KG_OK;
  case KG_DT_F16:
    pthread_once(&f16_table_once, f16_table_init);
    for (int64_t i = 0; i < n; i++) dst[i] = f16_table[rd16(p + 2 * i)];
    return KG_OK;
  case KG_DT_BF16:
    for (int64_t i = 0; i < n; i++) dst[i] = kg_bf16_to_f32(rd16(p + 2 * i));
    return KG_OK;
  case KG_DT_F64:
    for (int64_t i = 0; i < n; i++) {
      double v;
      memcpy(&v, p + 8 * i, 8);
      dst[i] = (float)v;
    }
    return KG_OK;
  default: break;
  }
  pthread_once(&f16_table_once, f16_table_init);
  block_fn fn = block_decoder(t);
  KG_ASSERT(fn != NULL);
  int64_t be = dtype_table[t].block_elems;
  size_t bb = dtype_table[t].block_bytes;
  for (int64_t i = 0; i < n / be; i++) fn(p + (size_t)i * bb, dst + i * be);
  return KG_OK;
}

int kg_convert_from_f32(kg_dtype t, const float *src, void *dst, int64_t n) {
  unsigned char *o = dst;
  switch (t) {
  case KG_DT_F32: memmove(dst, src, (size_t)n * 4); return KG_OK;
  case KG_DT_F16:
    for (int64_t i = 0; i < n; i++) {
      uint16_t h = kg_f32_to_f16(src[i]);
      memcpy(o + 2 * i, &h, 2);
    }
    return KG_OK;
  case KG_DT_BF16:
    for (int64_t i = 0; i < n; i++) {
      uint16_t h = kg_f32_to_bf16(src[i]);
      memcpy(o + 2 * i, &h, 2);
    }
    return KG_OK;
  case KG_DT_F64:
    for (int64_t i = 0; i < n; i++) {
      double v = src[i];
      memcpy(o + 8 * i, &v, 8);
    }
    return KG_OK;
  default: return kg_error(KG_ERR_UNSUPPORTED, "cannot convert float values to %s", kg_dtype_name(t));
  }
}
