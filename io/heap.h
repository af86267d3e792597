/* Binary min-heaps over plain arrays, generated per element type so the
 * ordering inlines into the hot loops that use them (BPE merge queues). */
#ifndef KG_IO_HEAP_H
#define KG_IO_HEAP_H

#include <stdlib.h>

#include "io/error.h"

/* Defines `static int PREFIX_push(T **h, size_t *n, size_t *cap, T item, const char *what)`
 * (grows the array; KG_ERR_NOMEM naming `what` on failure) and
 * `static T PREFIX_pop(T *h, size_t *n)` (n > 0) for a heap whose top is the
 * element x for which BEFORE(&x, &y) holds against every other y. */
#define KG_HEAP_DEFINE(PREFIX, T, BEFORE)                                                    \
  static int PREFIX##_push(T **h, size_t *n, size_t *cap, T item, const char *what) {        \
    if (*n == *cap) {                                                                        \
      size_t grown_cap = *cap ? *cap * 2 : 128;                                              \
      T *grown = realloc(*h, grown_cap * sizeof(T));                                         \
      if (!grown) return kg_error(KG_ERR_NOMEM, "%s: out of memory", what);                  \
      *h = grown;                                                                            \
      *cap = grown_cap;                                                                      \
    }                                                                                        \
    size_t i = (*n)++;                                                                       \
    while (i > 0) {                                                                          \
      size_t parent = (i - 1) / 2;                                                           \
      if (!BEFORE(&item, &(*h)[parent])) break;                                              \
      (*h)[i] = (*h)[parent];                                                                \
      i = parent;                                                                            \
    }                                                                                        \
    (*h)[i] = item;                                                                          \
    return KG_OK;                                                                            \
  }                                                                                          \
  static T PREFIX##_pop(T *h, size_t *n) {                                                   \
    T top = h[0], last = h[--(*n)];                                                          \
    size_t i = 0, count = *n;                                                                \
    for (;;) {                                                                               \
      size_t c = 2 * i + 1;                                                                  \
      if (c >= count) break;                                                                 \
      if (c + 1 < count && BEFORE(&h[c + 1], &h[c])) c++;                                    \
      if (!BEFORE(&h[c], &last)) break;                                                      \
      h[i] = h[c];                                                                           \
      i = c;                                                                                 \
    }                                                                                        \
    if (count) h[i] = last;                                                                  \
    return top;                                                                              \
  }

#endif
