/* Typed lookups over cJSON for configuration files (config.json, index
 * files, safetensors headers): every error names the file and the key. */
#ifndef KG_IO_JSON_UTIL_H
#define KG_IO_JSON_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* Parses `len` bytes of JSON (no NUL needed). *out is owned by the caller
 * (cJSON_Delete). Errors name `source` and the byte where parsing stopped. */
int kg_json_parse(const char *text, size_t len, const char *source, cJSON **out);
/* Reads and parses a whole file. */
int kg_json_read_file(const char *path, cJSON **out);

/* Optional keys of an object. Return 0 when the key is absent or null (*out
 * untouched), 1 when found, or a negative KG_ERR_FORMAT on a wrong type. */
int kg_json_opt_int(const cJSON *obj, const char *key, const char *source, long long *out);
int kg_json_opt_double(const cJSON *obj, const char *key, const char *source, double *out);
int kg_json_opt_bool(const cJSON *obj, const char *key, const char *source, int *out);
/* The string stays owned by the cJSON tree. */
int kg_json_opt_string(const cJSON *obj, const char *key, const char *source, const char **out);
/* Required keys: KG_ERR_FORMAT naming the key when absent. */
int kg_json_req_int(const cJSON *obj, const char *key, const char *source, long long *out);

/* A number item holding an exact integer in [0, 2^53]; 0 or KG_ERR_FORMAT (no message). */
int kg_json_exact_uint(const cJSON *item, uint64_t *out);

/* A number item printed as the shortest decimal that reads back as the same
 * float (1e-05, not 9.99999975e-06). Caller owns it like any cJSON item. */
cJSON *kg_json_float(float v);

/* Appends `s` to `out` as a JSON string literal (quotes, escapes). Returns
 * the number of bytes the literal needs (like snprintf), writing at most cap. */
size_t kg_json_quote(char *out, size_t cap, const char *s);

#endif
