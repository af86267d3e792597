/* UTF-8 and GPT-2 byte-level helpers shared by the tokenizers. Pure
 * functions; nothing here allocates. */
#ifndef KG_IO_UNICODE_H
#define KG_IO_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Length in bytes of the well-formed UTF-8 sequence at s[0..avail), or 0 when
 * it is malformed (bad lead byte, bad continuation, overlong form, surrogate,
 * above U+10FFFF, or truncated). Stores the code point in *cp when non-NULL. */
size_t kg_utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp);

/* Writes the UTF-8 form of cp (<= U+10FFFF) to out (room for 4 bytes);
 * returns its length. */
size_t kg_utf8_encode(uint32_t cp, unsigned char *out);

/* GPT-2's reversible byte-to-character map used by byte-level BPE: the
 * printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100.. in byte order. kg_bytelevel_char gives the code point of byte b;
 * kg_bytelevel_byte gives the byte of code point cp, or -1 when cp is not
 * one of the 256 characters. */
uint32_t kg_bytelevel_char(unsigned char b);
int kg_bytelevel_byte(uint32_t cp);

/* Canonical combining class of cp (0 for most characters). */
int kg_unicode_ccc(uint32_t cp);
/* Whether cp's NFC_Quick_Check property is Yes. */
int kg_unicode_nfc_qc_yes(uint32_t cp);
/* The NFC quick check of UAX #15 over UTF-8 text: returns n when the text is
 * certainly in NFC, else the byte offset of the first character that may
 * change (its code point in *bad). Malformed bytes are skipped. */
size_t kg_utf8_nfc_quick_check(const unsigned char *s, size_t n, uint32_t *bad);

#endif
