/* SHA-256 (FIPS 180-4), streaming, for checking data files and downloads
 * against the manifest. Our own so the io layer needs no crypto library.
 * No memory is allocated; the caller owns every buffer it passes in. */
#ifndef KG_IO_SHA256_H
#define KG_IO_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define KG_SHA256_DIGEST_BYTES 32
#define KG_SHA256_HEX_CHARS 65 /* 64 hex digits + NUL */

typedef struct kg_sha256 {
  uint32_t state[8];
  uint64_t total_bytes;
  uint8_t block[64];
  size_t block_len;
} kg_sha256;

void kg_sha256_init(kg_sha256 *ctx);
void kg_sha256_update(kg_sha256 *ctx, const void *data, size_t len);
/* Writes the digest; ctx must be re-initialized before reuse. */
void kg_sha256_final(kg_sha256 *ctx, uint8_t digest[KG_SHA256_DIGEST_BYTES]);

/* One-shot digest of a buffer. */
void kg_sha256_buffer(const void *data, size_t len, uint8_t digest[KG_SHA256_DIGEST_BYTES]);
/* Lower-case hex of a digest, NUL-terminated. */
void kg_sha256_hex(const uint8_t digest[KG_SHA256_DIGEST_BYTES], char hex[KG_SHA256_HEX_CHARS]);
/* Hex digest and byte count of a whole file; errors name the path
 * (KG_ERR_NOT_FOUND when it does not exist). size may be NULL. */
int kg_sha256_file(const char *path, char hex[KG_SHA256_HEX_CHARS], int64_t *size);

#endif
