/* The data manifest (configs/data-manifest.json): every dataset, tokenizer
 * and model file kickgrid can use, with its size, SHA-256 and where to get it.
 * `kickgrid data list/verify/fetch` and the model aliases are built on it.
 * The schema is described in docs/data.md.
 *
 * Ownership: kg_manifest_load hands the caller a manifest to release with
 * kg_manifest_free; entries and their strings belong to the manifest.
 * Path-returning functions write into the caller's buffer. */
#ifndef KG_IO_MANIFEST_H
#define KG_IO_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "io/sha256.h"

typedef enum kg_data_location {
  KG_DATA_IN_DATA_DIR = 0, /* relative to kg_data_dir() */
  KG_DATA_IN_CACHE = 1,    /* relative to kg_cache_dir() */
} kg_data_location;

/* One way of producing an entry's file. Sources are tried in order; whatever
 * a source yields is accepted only when size and SHA-256 match the entry. */
typedef struct kg_data_source {
  char *url;            /* http(s):// or file:// */
  char *archive;        /* NULL (the URL is the file), "zip", "tgz", "bz2" or "gz" */
  char *member;         /* path inside a zip/tgz archive */
  int64_t archive_size; /* -1 when not recorded */
  char *archive_sha256; /* NULL when not recorded */
  char *transform;      /* NULL or one of KG_DATA_TRANSFORMS (see docs/data.md) */
  int64_t transform_count;
  char *transform_field; /* for "jsonl_field" */
} kg_data_source;

typedef struct kg_data_entry {
  char *name; /* unique short name, e.g. "stories260K", "mmlu-test-anatomy" */
  char *path; /* relative to the data or cache directory */
  kg_data_location location;
  int optional; /* verified/fetched only when selected by name, or when present */
  int64_t size;
  char sha256[KG_SHA256_HEX_CHARS];
  kg_data_source *sources;
  size_t n_sources;
} kg_data_entry;

typedef struct kg_manifest {
  char *path; /* the file it was loaded from */
  kg_data_entry *entries;
  size_t n_entries;
} kg_manifest;

/* "$KG_MANIFEST", else "<KG_SOURCE_DIR>/configs/data-manifest.json". Owned here. */
const char *kg_manifest_default_path(void);
/* path NULL: the default. Errors name the file and the entry. */
int kg_manifest_load(const char *path, kg_manifest **out);
void kg_manifest_free(kg_manifest *m);
/* Entry whose name or path equals `key`; NULL when there is none. */
const kg_data_entry *kg_manifest_find(const kg_manifest *m, const char *key);

/* Comma-separated patterns; one matches an entry when it fnmatch()es the
 * name or the path, or names a directory the path lies under ("tasks/mmlu"). */
int kg_data_entry_matches(const kg_data_entry *e, const char *patterns);
/* Where the entry lives on this machine (data or cache directory + path). */
int kg_data_entry_file(const kg_data_entry *e, char *out, size_t cap);

typedef enum kg_data_state {
  KG_DATA_OK = 0,
  KG_DATA_MISSING = 1,
  KG_DATA_MISMATCH = 2,      /* present, wrong size or SHA-256 */
  KG_DATA_FETCH_FAILED = 3,  /* fetch tried every source and none gave the file */
  KG_DATA_SKIPPED = 4,       /* optional and absent, not selected */
  KG_DATA_FETCHED = 5,       /* fetch downloaded it and it checks out */
} kg_data_state;
const char *kg_data_state_name(kg_data_state s); /* "ok", "missing", ... */

/* Called once per selected entry with its final state and a one-line detail
 * ("" when there is nothing to add). */
typedef void (*kg_data_report_fn)(const kg_data_entry *e, kg_data_state state, const char *detail, void *user);

typedef struct kg_data_options {
  const char *only;   /* patterns (see kg_data_entry_matches); NULL: every non-optional entry + present optional ones */
  const char *mirror; /* NULL: $KG_DATA_MIRROR; "" or unset: the real URLs */
  int quiet;          /* no progress lines for downloads */
  kg_data_report_fn report;
  void *user;
} kg_data_options;

typedef struct kg_data_summary {
  size_t selected, ok, fetched, missing, mismatched, failed, skipped;
} kg_data_summary;

/* Size + SHA-256 of each selected file. Returns KG_OK when every selected
 * entry is ok (or skipped), else KG_ERR_NOT_FOUND/KG_ERR_FORMAT with a count. */
int kg_data_verify(const kg_manifest *m, const kg_data_options *opt, kg_data_summary *sum);
/* Verifies, then downloads missing or mismatching files: each source goes to a
 * temporary file beside the destination, is unpacked/transformed, checked
 * against size and SHA-256, and only then renamed into place; a file that
 * fails the check is deleted with a message saying what was expected. */
int kg_data_fetch(const kg_manifest *m, const kg_data_options *opt, kg_data_summary *sum);

/* https://HOST/PATH -> MIRROR/HOST/PATH (also http, file). */
int kg_data_mirror_url(const char *url, const char *mirror, char *out, size_t cap);

/* Model aliases: "smollm2" -> the SmolLM2-135M-Instruct Q4_1 GGUF in the cache
 * (error asking for `kickgrid data fetch --only smollm2` when absent);
 * "stories260K" -> models/stories260K/stories260K.bin in the data directory.
 * Anything else (a path, "synthetic:...") is copied unchanged. */
int kg_resolve_model(const char *spec, char *out, size_t cap);
/* rel joined to the data directory; when the file is absent the error names
 * the manifest entry and the fetch command. Cache entries resolve to the cache. */
int kg_resolve_data_file(const char *rel, char *out, size_t cap);

#endif
