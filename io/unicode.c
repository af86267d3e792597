#include "io/unicode.h"

size_t kg_utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp) {
  if (avail == 0) return 0;
  unsigned char b0 = s[0];
  uint32_t c;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (b0 < 0x80) {
    if (cp) *cp = b0;
    return 1;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2; c = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3; c = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;      /* overlong */
    else if (b0 == 0xED) hi = 0x9F; /* surrogates */
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4; c = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;      /* overlong */
    else if (b0 == 0xF4) hi = 0x8F; /* above U+10FFFF */
  } else {
    return 0;
  }
  if (avail < n) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    c = (c << 6) | (s[i] & 0x3F);
  }
  if (cp) *cp = c;
  return n;
}

size_t kg_utf8_encode(uint32_t cp, unsigned char *out) {
  if (cp < 0x80) {
    out[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (unsigned char)(0xC0 | (cp >> 6));
    out[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (unsigned char)(0xE0 | (cp >> 12));
    out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (unsigned char)(0xF0 | (cp >> 18));
  out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

static int bytelevel_printable(unsigned b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t kg_bytelevel_char(unsigned char b) {
  if (bytelevel_printable(b)) return b;
  /* The non-printable bytes take U+0100, U+0101, ... in increasing byte order. */
  uint32_t rank = 0;
  for (unsigned x = 0; x < b; x++)
    if (!bytelevel_printable(x)) rank++;
  return 0x100 + rank;
}

int kg_bytelevel_byte(uint32_t cp) {
  if (cp < 0x100) return bytelevel_printable(cp) ? (int)cp : -1;
  if (cp >= 0x100 + 68) return -1;
  uint32_t rank = cp - 0x100;
  for (unsigned x = 0; x < 256; x++)
    if (!bytelevel_printable(x) && rank-- == 0) return (int)x;
  return -1;
}
