#include "io/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/mapfile.h"

#define ARENA_ALIGN 64
#define ARENA_CHUNK ((size_t)16 << 20)

typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t size;
  size_t used;
  unsigned char *base;
} arena_chunk;

struct kg_arena {
  arena_chunk *chunks;
  kg_mapped_file **mappings;
  size_t n_mappings;
  size_t bytes;
};

kg_arena *kg_arena_create(void) {
  kg_arena *arena = calloc(1, sizeof(*arena));
  if (!arena) kg_error(KG_ERR_NOMEM, "out of memory creating an arena");
  return arena;
}

void kg_arena_destroy(kg_arena *arena) {
  if (!arena) return;
  for (arena_chunk *c = arena->chunks; c;) {
    arena_chunk *next = c->next;
    free(c->base);
    free(c);
    c = next;
  }
  for (size_t i = 0; i < arena->n_mappings; i++) kg_mapped_file_close(arena->mappings[i]);
  free(arena->mappings);
  free(arena);
}

static arena_chunk *arena_new_chunk(kg_arena *arena, size_t min_bytes) {
  size_t size = min_bytes > ARENA_CHUNK ? min_bytes : ARENA_CHUNK;
  arena_chunk *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  if (posix_memalign((void **)&c->base, ARENA_ALIGN, size) != 0) {
    free(c);
    return NULL;
  }
  c->size = size;
  c->next = arena->chunks;
  arena->chunks = c;
  return c;
}

void *kg_arena_alloc(kg_arena *arena, size_t bytes) {
  size_t rounded = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
  if (rounded < bytes) {
    kg_error(KG_ERR_NOMEM, "allocation of %zu bytes overflows", bytes);
    return NULL;
  }
  arena_chunk *c = arena->chunks;
  if (!c || c->size - c->used < rounded) {
    /* Big tensors get a chunk of their own so the current chunk's tail stays usable. */
    if (rounded >= ARENA_CHUNK / 4 && c) {
      arena_chunk *own = arena_new_chunk(arena, rounded);
      if (!own) goto oom;
      /* keep the partly used chunk at the head for small allocations */
      arena->chunks = own->next;
      own->next = arena->chunks->next;
      arena->chunks->next = own;
      c = own;
    } else {
      c = arena_new_chunk(arena, rounded);
      if (!c) goto oom;
    }
  }
  void *p = c->base + c->used;
  c->used += rounded;
  memset(p, 0, bytes);
  arena->bytes += rounded;
  return p;
oom:
  kg_error(KG_ERR_NOMEM, "out of memory allocating %.1f MiB", (double)bytes / (1 << 20));
  return NULL;
}

char *kg_arena_strdup(kg_arena *arena, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = kg_arena_alloc(arena, n);
  if (p) memcpy(p, s, n);
  return p;
}

int kg_arena_adopt_mapping(kg_arena *arena, kg_mapped_file *mapping) {
  kg_mapped_file **grown = realloc(arena->mappings, (arena->n_mappings + 1) * sizeof(*grown));
  if (!grown) return kg_error(KG_ERR_NOMEM, "out of memory");
  arena->mappings = grown;
  arena->mappings[arena->n_mappings++] = mapping;
  return KG_OK;
}

size_t kg_arena_bytes(const kg_arena *arena) { return arena->bytes; }
