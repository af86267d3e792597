/* Dequantization of every ggml block format against blocks packed here from
 * the format definitions (the packing follows ggml's reference quantizers),
 * with scales chosen as small dyadic numbers so expected values are exact.
 * Also f16/bf16 conversions: every half value against a formula decode,
 * rounding ties, subnormals, overflow, NaN and infinity. */
#include <stdint.h>
#include <string.h>

#include "io/dtype.h"
#include "io/error.h"
#include "kgtest.h"

static uint32_t lcg_state = 12345;
static uint32_t lcg(void) {
  lcg_state = lcg_state * 1664525u + 1013904223u;
  return lcg_state >> 8;
}

static void put16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v & 0xff);
  p[1] = (unsigned char)(v >> 8);
}

/* f16 encodings of exact dyadic values */
#define H_0_25 0x3400
#define H_0_5 0x3800
#define H_NEG_0_125 0xB000
#define H_1_5 0x3E00

static int compare(const char *what, const float *got, const double *want, int n) {
  int bad = 0;
  for (int i = 0; i < n; i++) {
    if ((double)got[i] != want[i]) {
      if (bad < 5) fprintf(stderr, "%s[%d]: got %.9g want %.9g\n", what, i, (double)got[i], want[i]);
      bad++;
    }
  }
  return bad;
}

static void test_q4_0_q4_1(void) {
  unsigned char b0[18], b1[20];
  int q[32];
  double w0[32], w1[32];
  float out[32];
  for (int i = 0; i < 32; i++) q[i] = (int)(lcg() % 16);
  put16(b0, H_1_5);
  put16(b1, H_0_25);
  put16(b1 + 2, H_NEG_0_125);
  for (int j = 0; j < 16; j++) {
    b0[2 + j] = (unsigned char)(q[j] | (q[j + 16] << 4));
    b1[4 + j] = b0[2 + j];
  }
  for (int i = 0; i < 32; i++) {
    w0[i] = (q[i] - 8) * 1.5;
    w1[i] = q[i] * 0.25 - 0.125;
  }
  CHECK_OK(kg_dequantize(KG_DT_Q4_0, b0, out, 32));
  CHECK(compare("q4_0", out, w0, 32) == 0);
  CHECK_OK(kg_dequantize(KG_DT_Q4_1, b1, out, 32));
  CHECK(compare("q4_1", out, w1, 32) == 0);
}

static void test_q5(void) {
  unsigned char b0[22], b1[24];
  int q[32];
  double w0[32], w1[32];
  float out[32];
  for (int i = 0; i < 32; i++) q[i] = (int)(lcg() % 32);
  uint32_t qh = 0;
  for (int i = 0; i < 32; i++) qh |= (uint32_t)((q[i] >> 4) & 1) << i;
  put16(b0, H_0_5);
  put16(b1, H_0_25);
  put16(b1 + 2, H_0_5);
  for (int k = 0; k < 4; k++) b0[2 + k] = b1[4 + k] = (unsigned char)(qh >> (8 * k));
  for (int j = 0; j < 16; j++) b0[6 + j] = b1[8 + j] = (unsigned char)((q[j] & 15) | ((q[j + 16] & 15) << 4));
  for (int i = 0; i < 32; i++) {
    w0[i] = (q[i] - 16) * 0.5;
    w1[i] = q[i] * 0.25 + 0.5;
  }
  CHECK_OK(kg_dequantize(KG_DT_Q5_0, b0, out, 32));
  CHECK(compare("q5_0", out, w0, 32) == 0);
  CHECK_OK(kg_dequantize(KG_DT_Q5_1, b1, out, 32));
  CHECK(compare("q5_1", out, w1, 32) == 0);
}

static void test_q8_0(void) {
  unsigned char b[2 * 34];
  double w[64];
  float out[64];
  for (int blk = 0; blk < 2; blk++) {
    put16(b + 34 * blk, blk ? H_NEG_0_125 : H_0_25);
    for (int j = 0; j < 32; j++) {
      int v = (int)(lcg() % 256) - 128;
      b[34 * blk + 2 + j] = (unsigned char)(int8_t)v;
      w[32 * blk + j] = v * (blk ? -0.125 : 0.25);
    }
  }
  CHECK_OK(kg_dequantize(KG_DT_Q8_0, b, out, 64));
  CHECK(compare("q8_0", out, w, 64) == 0);
}

/* position of value i (0..255) in the 2-bit layouts of Q2_K/Q3_K: byte l of
 * the 32-byte slice of its 128-value half, at bit 2*group */
static void two_bit_pos(int i, int *byte, int *group, int *half) {
  *half = i / 128;
  *group = (i % 128) / 32;
  *byte = 32 * *half + i % 32;
}

static void test_q2_k(void) {
  unsigned char b[84] = {0};
  int q[256], sc[16], mn[16];
  double w[256];
  float out[256];
  for (int s = 0; s < 16; s++) {
    sc[s] = (int)(lcg() % 16);
    mn[s] = (int)(lcg() % 16);
    b[s] = (unsigned char)(sc[s] | (mn[s] << 4));
  }
  for (int i = 0; i < 256; i++) {
    int byte, group, half;
    q[i] = (int)(lcg() % 4);
    two_bit_pos(i, &byte, &group, &half);
    b[16 + byte] |= (unsigned char)(q[i] << (2 * group));
  }
  put16(b + 80, H_0_25);
  put16(b + 82, H_0_5);
  for (int i = 0; i < 256; i++) w[i] = 0.25 * sc[i / 16] * q[i] - 0.5 * mn[i / 16];
  CHECK_OK(kg_dequantize(KG_DT_Q2_K, b, out, 256));
  CHECK(compare("q2_k", out, w, 256) == 0);
}

static void test_q3_k(void) {
  unsigned char b[110] = {0};
  int u[256], ls[16];
  double w[256];
  float out[256];
  unsigned char *hmask = b, *qs = b + 32, *scales = b + 96;
  for (int j = 0; j < 16; j++) {
    ls[j] = (int)(lcg() % 64);
    int l = ls[j];
    if (j < 8) scales[j] = (unsigned char)(l & 0xF);
    else scales[j - 8] |= (unsigned char)((l & 0xF) << 4);
    l >>= 4;
    scales[j % 4 + 8] |= (unsigned char)(l << (2 * (j / 4)));
  }
  for (int i = 0; i < 256; i++) {
    int byte, group, half;
    u[i] = (int)(lcg() % 8); /* stored 3-bit value; the weight is u - 4 */
    two_bit_pos(i, &byte, &group, &half);
    qs[byte] |= (unsigned char)((u[i] & 3) << (2 * group));
    if (u[i] & 4) hmask[i % 32] |= (unsigned char)(1u << (4 * half + group));
  }
  put16(b + 108, H_0_25);
  for (int i = 0; i < 256; i++) w[i] = 0.25 * (ls[i / 16] - 32) * (u[i] - 4);
  CHECK_OK(kg_dequantize(KG_DT_Q3_K, b, out, 256));
  CHECK(compare("q3_k", out, w, 256) == 0);
}

/* ggml's 12-byte packing of eight 6-bit scales and mins (Q4_K, Q5_K) */
static void pack_k4_scales(unsigned char *s, const int *ls, const int *lm) {
  memset(s, 0, 12);
  for (int j = 0; j < 8; j++) {
    if (j < 4) {
      s[j] = (unsigned char)ls[j];
      s[j + 4] = (unsigned char)lm[j];
    } else {
      s[j + 4] = (unsigned char)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      s[j - 4] |= (unsigned char)((ls[j] >> 4) << 6);
      s[j] |= (unsigned char)((lm[j] >> 4) << 6);
    }
  }
}

static void test_q4_k_q5_k(void) {
  unsigned char b4[144] = {0}, b5[176] = {0};
  int q[256], ls[8], lm[8];
  double w4[256], w5[256];
  float out[256];
  for (int j = 0; j < 8; j++) {
    ls[j] = (int)(lcg() % 64);
    lm[j] = (int)(lcg() % 64);
  }
  put16(b4, H_0_25);
  put16(b4 + 2, H_NEG_0_125);
  put16(b5, H_0_5);
  put16(b5 + 2, H_0_25);
  pack_k4_scales(b4 + 4, ls, lm);
  pack_k4_scales(b5 + 4, ls, lm);
  for (int i = 0; i < 256; i++) q[i] = (int)(lcg() % 32);
  for (int j = 0; j < 4; j++) {
    for (int l = 0; l < 32; l++) {
      int a = q[64 * j + l], c = q[64 * j + 32 + l];
      b4[16 + 32 * j + l] = (unsigned char)((a & 15) | ((c & 15) << 4));
      b5[48 + 32 * j + l] = b4[16 + 32 * j + l];
      b5[16 + l] |= (unsigned char)(((a >> 4) << (2 * j)) | ((c >> 4) << (2 * j + 1)));
    }
  }
  for (int i = 0; i < 256; i++) {
    int s = i / 32;
    w4[i] = 0.25 * ls[s] * (q[i] & 15) - (-0.125) * lm[s];
    w5[i] = 0.5 * ls[s] * q[i] - 0.25 * lm[s];
  }
  CHECK_OK(kg_dequantize(KG_DT_Q4_K, b4, out, 256));
  CHECK(compare("q4_k", out, w4, 256) == 0);
  CHECK_OK(kg_dequantize(KG_DT_Q5_K, b5, out, 256));
  CHECK(compare("q5_k", out, w5, 256) == 0);
}

static void test_q6_k(void) {
  unsigned char b[210] = {0};
  int L[256], sc[16];
  double w[256];
  float out[256];
  unsigned char *ql = b, *qh = b + 128;
  for (int i = 0; i < 256; i++) L[i] = (int)(lcg() % 64);
  for (int s = 0; s < 16; s++) {
    sc[s] = (int)(lcg() % 256) - 128;
    b[192 + s] = (unsigned char)(int8_t)sc[s];
  }
  for (int j = 0; j < 256; j += 128) {
    for (int l = 0; l < 32; l++) {
      int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l] = (unsigned char)(q1 | (q3 << 4));
      ql[l + 32] = (unsigned char)(q2 | (q4 << 4));
      qh[l] = (unsigned char)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                              ((L[j + l + 96] >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
  put16(b + 208, H_NEG_0_125);
  for (int i = 0; i < 256; i++) w[i] = -0.125 * sc[i / 16] * (L[i] - 32);
  CHECK_OK(kg_dequantize(KG_DT_Q6_K, b, out, 256));
  CHECK(compare("q6_k", out, w, 256) == 0);
}

static void test_q8_k(void) {
  unsigned char b[292] = {0};
  double w[256];
  float out[256];
  float d = 0.0625f;
  memcpy(b, &d, 4);
  for (int i = 0; i < 256; i++) {
    int v = (int)(lcg() % 256) - 128;
    b[4 + i] = (unsigned char)(int8_t)v;
    w[i] = v * 0.0625;
  }
  CHECK_OK(kg_dequantize(KG_DT_Q8_K, b, out, 256));
  CHECK(compare("q8_k", out, w, 256) == 0);
}

static uint32_t fbits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float bitsf(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void test_half_conversions(void) {
  /* every f16 value against the IEEE definition */
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    if (h & 0x8000) v = -v;
    float got = kg_f16_to_f32((uint16_t)h);
    if (e == 31 && m) {
      bad += !isnan(got);
      bad += !isnan(kg_f16_to_f32(kg_f32_to_f16(got)));
      continue;
    }
    bad += (double)got != v || !signbit(got) != !signbit(v);
    bad += kg_f32_to_f16(got) != h; /* exact values round-trip */
  }
  CHECK_MSG(bad == 0, "%d f16 values decode or round-trip wrong", bad);
  CHECK(kg_f32_to_f16(1.0f) == 0x3c00);
  CHECK(kg_f32_to_f16(-2.0f) == 0xc000);
  CHECK(kg_f32_to_f16(65504.0f) == 0x7bff);
  CHECK(kg_f32_to_f16(65519.996f) == 0x7bff);
  CHECK(kg_f32_to_f16(65520.0f) == 0x7c00); /* halfway to 65536 rounds to even: overflow */
  CHECK(kg_f32_to_f16(1e10f) == 0x7c00);
  CHECK(kg_f32_to_f16(-INFINITY) == 0xfc00);
  CHECK(kg_f32_to_f16(-0.0f) == 0x8000);
  CHECK((kg_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (kg_f32_to_f16(NAN) & 0x3ff) != 0);
  CHECK(kg_f32_to_f16(bitsf(0x7f800001u)) != 0x7c00); /* a NaN with low payload stays NaN */
  CHECK(kg_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);      /* tie, to even */
  CHECK(kg_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02);  /* tie, to even (up) */
  CHECK(kg_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01);
  CHECK(kg_f32_to_f16(0x1p-24f) == 0x0001);             /* smallest subnormal */
  CHECK(kg_f32_to_f16(0x1p-25f) == 0x0000);             /* tie with zero: even */
  CHECK(kg_f32_to_f16(0x1.8p-25f) == 0x0001);
  CHECK(kg_f32_to_f16(3 * 0x1p-25f) == 0x0002);          /* 1.5 units: tie, to even */
  CHECK(kg_f32_to_f16(5 * 0x1p-25f) == 0x0002);          /* 2.5 units: tie, to even */
  CHECK(kg_f32_to_f16(0x1p-14f - 0x1p-26f) == 0x0400);   /* rounds up into the normals */
  CHECK(kg_f32_to_f16(1e-30f) == 0x0000);

  bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = kg_bf16_to_f32((uint16_t)h);
    bad += fbits(f) != h << 16;
    if (!isnan(f)) bad += kg_f32_to_bf16(f) != h;
    else bad += !isnan(kg_bf16_to_f32(kg_f32_to_bf16(f)));
  }
  CHECK_MSG(bad == 0, "%d bf16 values decode or round-trip wrong", bad);
  CHECK(kg_f32_to_bf16(bitsf(0x3f808000u)) == 0x3f80); /* tie, to even */
  CHECK(kg_f32_to_bf16(bitsf(0x3f818000u)) == 0x3f82); /* tie, to even (up) */
  CHECK(kg_f32_to_bf16(bitsf(0x3f808001u)) == 0x3f81);
  CHECK(kg_f32_to_bf16(bitsf(0x7f7fffffu)) == 0x7f80); /* max float rounds to infinity */
  CHECK(isnan(kg_bf16_to_f32(kg_f32_to_bf16(bitsf(0x7f800001u)))));
  CHECK(kg_f32_to_bf16(bitsf(0x00000001u)) == 0x0000); /* tiny subnormal rounds to zero */
  CHECK(kg_f32_to_bf16(bitsf(0x00008000u)) == 0x0000); /* tie, to even */
  CHECK(kg_f32_to_bf16(bitsf(0x00018000u)) == 0x0002);
}

static void test_plain_and_errors(void) {
  unsigned char f16[4], bf[4];
  put16(f16, 0x3c00);
  put16(f16 + 2, 0xc000);
  put16(bf, 0x3f80);
  put16(bf + 2, 0xc040);
  float out[4];
  CHECK_OK(kg_dequantize(KG_DT_F16, f16, out, 2));
  CHECK(out[0] == 1.0f && out[1] == -2.0f);
  CHECK_OK(kg_dequantize(KG_DT_BF16, bf, out, 2));
  CHECK(out[0] == 1.0f && out[1] == -3.0f);
  double d[2] = {0.1, -1e300};
  CHECK_OK(kg_dequantize(KG_DT_F64, d, out, 2));
  CHECK(out[0] == 0.1f && isinf(out[1]) && out[1] < 0);
  /* unaligned source */
  unsigned char raw[9];
  float one = 1.5f;
  memcpy(raw + 1, &one, 4);
  CHECK_OK(kg_dequantize(KG_DT_F32, raw + 1, out, 1));
  CHECK(out[0] == 1.5f);
  unsigned char block[40] = {0};
  CHECK(kg_dequantize(KG_DT_Q4_0, block, out, 31) == KG_ERR_ARG);
  CHECK(kg_dequantize(KG_DT_I32, block, out, 1) == KG_ERR_UNSUPPORTED);
  CHECK(kg_dequantize(KG_DT_COUNT, block, out, 1) == KG_ERR_UNSUPPORTED);
  /* sizes */
  CHECK(kg_dtype_row_bytes(KG_DT_Q4_1, 64) == 40);
  CHECK(kg_dtype_row_bytes(KG_DT_Q4_1, 63) == 0);
  CHECK(kg_dtype_row_bytes(KG_DT_Q6_K, 512) == 420);
  CHECK(kg_dtype_row_bytes(KG_DT_BF16, 3) == 6);
  CHECK(kg_dtype_row_bytes(KG_DT_F32, INT64_MAX) == 0); /* overflows size_t */
  kg_dtype t;
  CHECK(kg_dtype_from_name("BF16", &t) == KG_OK && t == KG_DT_BF16);
  CHECK(kg_dtype_from_name("q4_k", &t) == KG_OK && t == KG_DT_Q4_K);
  CHECK(kg_dtype_from_name("f8", &t) < 0);
  /* conversion from f32 */
  float src[3] = {1.0f, -0.5f, 65520.0f};
  uint16_t h[3];
  CHECK_OK(kg_convert_from_f32(KG_DT_F16, src, h, 3));
  CHECK(h[0] == 0x3c00 && h[1] == 0xb800 && h[2] == 0x7c00);
  CHECK_OK(kg_convert_from_f32(KG_DT_BF16, src, h, 2));
  CHECK(h[0] == 0x3f80 && h[1] == 0xbf00);
  CHECK(kg_convert_from_f32(KG_DT_Q8_0, src, h, 1) == KG_ERR_UNSUPPORTED);
}

int main(void) {
  test_q4_0_q4_1();
  test_q5();
  test_q8_0();
  test_q2_k();
  test_q3_k();
  test_q4_k_q5_k();
  test_q6_k();
  test_q8_k();
  test_half_conversions();
  test_plain_and_errors();
  return kgtest_finish("test_dequant");
}
