/* SHA-256 against the FIPS 180-2 example vectors (appendix B and the
 * NIST short-message examples), plus the streaming API: any way of cutting
 * the input into update() calls must give the one-shot digest, including
 * cuts around the 55/56/64-byte padding boundaries. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/error.h"
#include "io/sha256.h"
#include "kgtest.h"

static void hex_of(const void *data, size_t len, char hex[KG_SHA256_HEX_CHARS]) {
  uint8_t d[KG_SHA256_DIGEST_BYTES];
  kg_sha256_buffer(data, len, d);
  kg_sha256_hex(d, hex);
}

static void check_vector(const char *msg, const char *expected) {
  char hex[KG_SHA256_HEX_CHARS];
  hex_of(msg, strlen(msg), hex);
  CHECK_MSG(strcmp(hex, expected) == 0, "sha256(\"%.20s...\") = %s, want %s", msg, hex, expected);
}

static void test_fips_vectors(void) {
  check_vector("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  check_vector("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  check_vector("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
               "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  check_vector("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopq"
               "rstnopqrstu",
               "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_million_a(void) {
  /* Fed in 1000-byte pieces, as the standard's long-message example suggests. */
  char piece[1000];
  memset(piece, 'a', sizeof(piece));
  kg_sha256 ctx;
  kg_sha256_init(&ctx);
  for (int i = 0; i < 1000; i++) kg_sha256_update(&ctx, piece, sizeof(piece));
  uint8_t d[KG_SHA256_DIGEST_BYTES];
  char hex[KG_SHA256_HEX_CHARS];
  kg_sha256_final(&ctx, d);
  kg_sha256_hex(d, hex);
  CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_streaming_matches_one_shot(void) {
  uint8_t msg[300];
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof(msg); i++) {
    x = x * 1103515245u + 12345u;
    msg[i] = (uint8_t)(x >> 16);
  }
  const size_t lengths[] = {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 300};
  for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
    size_t len = lengths[li];
    char whole[KG_SHA256_HEX_CHARS];
    hex_of(msg, len, whole);
    for (size_t cut1 = 0; cut1 <= len; cut1 += 7) {
      for (size_t cut2 = cut1; cut2 <= len; cut2 += 13) {
        kg_sha256 ctx;
        uint8_t d[KG_SHA256_DIGEST_BYTES];
        char hex[KG_SHA256_HEX_CHARS];
        kg_sha256_init(&ctx);
        kg_sha256_update(&ctx, msg, cut1);
        kg_sha256_update(&ctx, msg + cut1, cut2 - cut1);
        kg_sha256_update(&ctx, msg + cut2, len - cut2);
        kg_sha256_final(&ctx, d);
        kg_sha256_hex(d, hex);
        if (strcmp(hex, whole) != 0) {
          CHECK_MSG(0, "len %zu cut at %zu,%zu: %s != %s", len, cut1, cut2, hex, whole);
          return;
        }
      }
    }
  }
  CHECK(1);
}

static void test_file(void) {
  char path[] = "/tmp/kg_test_sha256_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd < 0) return;
  /* Larger than the 64 KiB read chunk so the loop runs more than once. */
  size_t n = 200000;
  unsigned char *buf = malloc(n);
  for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(i * 31 + 7);
  CHECK(write(fd, buf, n) == (ssize_t)n);
  close(fd);
  char from_file[KG_SHA256_HEX_CHARS], from_buf[KG_SHA256_HEX_CHARS];
  int64_t size = -1;
  CHECK_OK(kg_sha256_file(path, from_file, &size));
  hex_of(buf, n, from_buf);
  CHECK_STR(from_file, from_buf);
  CHECK(size == (int64_t)n);
  unlink(path);
  free(buf);
  CHECK(kg_sha256_file(path, from_file, NULL) == KG_ERR_NOT_FOUND);
  CHECK(strstr(kg_error_message(), path) != NULL);
}

int main(void) {
  test_fips_vectors();
  test_million_a();
  test_streaming_matches_one_shot();
  test_file();
  return kgtest_finish("test_sha256");
}
