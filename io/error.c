#include "io/error.h"

#include <stdarg.h>
#include <string.h>

#define KG_ERROR_CAP 2048

static _Thread_local char error_message[KG_ERROR_CAP];
static _Thread_local char error_origin[256];
static _Thread_local int error_code;

static const char *strip_source_root(const char *path) {
  /* __FILE__ is absolute under CMake; report paths relative to the repo. */
  static const char root[] = KG_SOURCE_DIR "/";
  size_t n = sizeof(root) - 1;
  return strncmp(path, root, n) == 0 ? path + n : path;
}

int kg_error_at(const char *src_file, int src_line, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(error_message, sizeof(error_message), fmt, ap);
  va_end(ap);
  snprintf(error_origin, sizeof(error_origin), "%s:%d", strip_source_root(src_file), src_line);
  error_code = code;
  return code;
}

int kg_error_context(const char *fmt, ...) {
  char prefix[KG_ERROR_CAP];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof(prefix), fmt, ap);
  va_end(ap);
  char joined[2 * KG_ERROR_CAP];
  snprintf(joined, sizeof(joined), "%s%s", prefix, error_message);
  snprintf(error_message, sizeof(error_message), "%.*s", KG_ERROR_CAP - 1, joined);
  return error_code;
}

const char *kg_error_message(void) { return error_message; }
const char *kg_error_origin(void) { return error_origin; }
int kg_error_code(void) { return error_code; }

void kg_error_clear(void) {
  error_message[0] = '\0';
  error_origin[0] = '\0';
  error_code = KG_OK;
}

const char *kg_code_name(int code) {
  switch (code) {
  case KG_OK: return "ok";
  case KG_ERR_IO: return "io";
  case KG_ERR_FORMAT: return "format";
  case KG_ERR_NOMEM: return "out of memory";
  case KG_ERR_ARG: return "invalid argument";
  case KG_ERR_NUMERIC: return "numeric";
  case KG_ERR_UNSUPPORTED: return "unsupported";
  case KG_ERR_NOT_FOUND: return "not found";
  case KG_ERR_COMM: return "communication";
  case KG_ERR_DEVICE: return "device";
  case KG_ERR_CANCELLED: return "cancelled";
  default: return "unknown";
  }
}
