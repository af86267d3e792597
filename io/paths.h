/* Where kickgrid finds data and keeps downloads.
 *
 * Data directory (datasets, tokenizers, small models), first match wins:
 *   1. kg_paths_set_data_dir() (the `data_dir` config key or --data-dir)
 *   2. $KG_DATA_DIR
 *   3. ../shared/data beside the source tree, then ../shared/data from the
 *      working directory.
 * Cache directory (downloaded models, fetched files when the data directory
 * is read-only): $KG_CACHE_DIR, else $XDG_CACHE_HOME/kickgrid, else
 * ~/.cache/kickgrid. Returned strings are owned by this module. */
#ifndef KG_IO_PATHS_H
#define KG_IO_PATHS_H

#include <stddef.h>

void kg_paths_set_data_dir(const char *dir);
const char *kg_data_dir(void);
const char *kg_cache_dir(void);

/* Joins a directory and a relative path into out; error when it does not fit. */
int kg_path_join(char *out, size_t cap, const char *dir, const char *rel);
/* Joins kg_data_dir() and rel. */
int kg_data_path(char *out, size_t cap, const char *rel);
int kg_path_exists(const char *path);
int kg_path_is_dir(const char *path);
/* mkdir -p; KG_OK when it exists afterwards. */
int kg_mkdir_p(const char *dir);

#endif
