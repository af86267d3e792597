/* Error propagation for kickgrid.
 *
 * Failures that can happen because of input (a bad file, a bad config, a
 * non-finite value, an allocation that does not fit) are returned as negative
 * codes built with kg_error(), so that a grid cell can end as status=failed
 * with a readable message and the grid goes on. Programmer invariants use
 * KG_ASSERT, which aborts.
 *
 * The message lives in thread-local storage: it is valid until the next
 * kg_error()/kg_error_clear() on the same thread. Callers never free it.
 */
#ifndef KG_IO_ERROR_H
#define KG_IO_ERROR_H

#include <stdio.h>
#include <stdlib.h>

enum kg_code {
  KG_OK = 0,
  KG_ERR_IO = -1,          /* a file or stream could not be read or written */
  KG_ERR_FORMAT = -2,      /* a file's contents are malformed */
  KG_ERR_NOMEM = -3,       /* an allocation failed (host or device) */
  KG_ERR_ARG = -4,         /* a caller or user passed an invalid value */
  KG_ERR_NUMERIC = -5,     /* non-finite values, non-positive-definite matrix */
  KG_ERR_UNSUPPORTED = -6, /* valid input this build cannot handle */
  KG_ERR_NOT_FOUND = -7,   /* a named file, tensor, key or task is absent */
  KG_ERR_COMM = -8,        /* MPI or NCCL failure */
  KG_ERR_DEVICE = -9,      /* CUDA runtime or library failure */
  KG_ERR_CANCELLED = -10,  /* stopped on request (signal, drain) */
};

/* Records a message (printf-style) and returns `code` so callers can write
 * `return kg_error(KG_ERR_FORMAT, "%s: bad magic", path);`. */
int kg_error_at(const char *src_file, int src_line, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define kg_error(code, ...) kg_error_at(__FILE__, __LINE__, (code), __VA_ARGS__)

/* Prepends context to the current message ("loading x.gguf: " + old message)
 * and returns the current code. Use on the way up when a lower layer failed. */
int kg_error_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

const char *kg_error_message(void); /* "" when no error was recorded */
const char *kg_error_origin(void);  /* "io/gguf.c:123" of the first kg_error */
int kg_error_code(void);
void kg_error_clear(void);
const char *kg_code_name(int code); /* "format", "io", ... */

/* Returns from the enclosing function when `expr` yields a negative code. */
#define KG_TRY(expr)                                                           \
  do {                                                                         \
    int kg_try_rc_ = (expr);                                                   \
    if (kg_try_rc_ < 0) return kg_try_rc_;                                     \
  } while (0)

/* Programmer invariants only: never for conditions input can cause. */
#define KG_ASSERT(cond)                                                        \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: internal error: assertion '%s' failed\n",       \
              __FILE__, __LINE__, #cond);                                      \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#endif
