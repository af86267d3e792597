/* Internal to the data manifest code (io/manifest.c, io/fetch.c,
 * io/data_transform.c, io/datasets.c): the walk over selected entries that
 * verify and fetch share, the output sink of a fetch, and the documented
 * transforms that turn an upstream file into the manifest's file.
 * Not a public API. */
#ifndef KG_IO_DATA_INTERNAL_H
#define KG_IO_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/manifest.h"
#include "io/sha256.h"

/* Size and SHA-256 of the entry's file: KG_DATA_OK, KG_DATA_MISSING or
 * KG_DATA_MISMATCH, with a one-line detail. */
kg_data_state kg_data_check_entry(const kg_data_entry *e, char *detail, size_t cap);

/* What fetch does to an entry that is not ok: returns the new state. */
typedef kg_data_state (*kg_data_action_fn)(const kg_data_entry *e, const kg_data_options *opt, char *detail,
                                           size_t cap);
/* Checks every selected entry, applies `action` (may be NULL) to those not
 * ok, reports and counts them. `verb` ("verify", "fetch") goes into the
 * summary error. */
int kg_data_walk(const kg_manifest *m, const kg_data_options *opt, kg_data_summary *sum, kg_data_action_fn action,
                 const char *verb);

/* Where fetched bytes go: a file, hashed and counted as they are written.
 * Writing past `limit` bytes (when limit >= 0) is an error, so a wrong or
 * runaway download stops early. The sink does not own fp. */
typedef struct kg_data_sink {
  FILE *fp;
  const char *what; /* name for messages */
  kg_sha256 sha;
  int64_t bytes;
  int64_t limit;
} kg_data_sink;

void kg_data_sink_init(kg_data_sink *sink, FILE *fp, const char *what, int64_t limit);
int kg_data_sink_write(kg_data_sink *sink, const void *data, size_t len);
/* Hex digest of everything written so far (finalizes the hash). */
void kg_data_sink_digest(kg_data_sink *sink, char hex[KG_SHA256_HEX_CHARS]);

/* The transforms the manifest may name; NULL-terminated. */
extern const char *const kg_data_transforms[];
/* KG_OK when `op` is known and its parameters make sense. */
int kg_data_transform_check(const char *op, int64_t count, const char *field, char *why, size_t why_cap);

/* Reads `in` and writes the transformed bytes to `out`. op NULL copies.
 * *consumed_all is set when the input was read to its end (then a
 * decompressor feeding `in` must also have succeeded). `what` names the
 * input in messages. */
int kg_data_transform_run(const char *op, int64_t count, const char *field, const char *what, FILE *in,
                          kg_data_sink *out, int *consumed_all);

/* True when JSON text s[0, n) holds a \u0000 escape (cJSON would cut the
 * decoded string at that NUL). */
int kg_json_has_escaped_nul(const char *s, size_t n);

#endif
