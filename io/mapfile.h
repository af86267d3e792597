/* Read-only memory mappings of whole files (checkpoints, tokenizer files). */
#ifndef KG_IO_MAPFILE_H
#define KG_IO_MAPFILE_H

#include <stddef.h>

typedef struct kg_mapped_file {
  const unsigned char *data; /* NULL for an empty file */
  size_t size;
  char *path; /* owned copy */
} kg_mapped_file;

/* Maps `path` read-only. On success *out is owned by the caller (close with
 * kg_mapped_file_close). Errors name the path. */
int kg_mapped_file_open(const char *path, kg_mapped_file **out);
void kg_mapped_file_close(kg_mapped_file *f);

/* Reads a whole file into a NUL-terminated malloc'd buffer the caller frees. */
int kg_read_file(const char *path, char **out, size_t *out_size);

#endif
