/* One arena owns a model's tensors (ggml style): allocations are carved out
 * of large chunks and freed together; memory mappings the tensors point into
 * can be handed to the arena so they are unmapped with it. */
#ifndef KG_IO_ARENA_H
#define KG_IO_ARENA_H

#include <stddef.h>

typedef struct kg_arena kg_arena;
struct kg_mapped_file;

/* Returns NULL (with kg_error set) when out of memory. Caller owns the arena. */
kg_arena *kg_arena_create(void);
void kg_arena_destroy(kg_arena *arena);

/* Zero-initialized, 64-byte aligned. Memory stays owned by the arena.
 * Returns NULL with kg_error(KG_ERR_NOMEM) on failure. */
void *kg_arena_alloc(kg_arena *arena, size_t bytes);
/* Copies a string into the arena. */
char *kg_arena_strdup(kg_arena *arena, const char *s);
/* The arena takes ownership of `mapping` and closes it on destroy. */
int kg_arena_adopt_mapping(kg_arena *arena, struct kg_mapped_file *mapping);
size_t kg_arena_bytes(const kg_arena *arena);

#endif
