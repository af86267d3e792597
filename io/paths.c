#include "io/paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/error.h"

static char data_dir_override[PATH_MAX];
static char data_dir_resolved[PATH_MAX];
static char cache_dir_resolved[PATH_MAX];

void kg_paths_set_data_dir(const char *dir) {
  snprintf(data_dir_override, sizeof(data_dir_override), "%s", dir ? dir : "");
}

int kg_path_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

int kg_path_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *kg_data_dir(void) {
  if (data_dir_override[0]) return data_dir_override;
  const char *env = getenv("KG_DATA_DIR");
  if (env && *env) return env;
  const char *beside_source = KG_SOURCE_DIR "/../shared/data";
  if (kg_path_is_dir(beside_source)) {
    char *real = realpath(beside_source, NULL);
    snprintf(data_dir_resolved, sizeof(data_dir_resolved), "%s", real ? real : beside_source);
    free(real);
    return data_dir_resolved;
  }
  return "../shared/data";
}

const char *kg_cache_dir(void) {
  const char *env = getenv("KG_CACHE_DIR");
  if (env && *env) return env;
  const char *xdg = getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) {
    snprintf(cache_dir_resolved, sizeof(cache_dir_resolved), "%s/kickgrid", xdg);
  } else {
    const char *home = getenv("HOME");
    snprintf(cache_dir_resolved, sizeof(cache_dir_resolved), "%s/.cache/kickgrid", home && *home ? home : "/tmp");
  }
  return cache_dir_resolved;
}

int kg_path_join(char *out, size_t cap, const char *dir, const char *rel) {
  int n;
  if (rel[0] == '/' || !dir || !dir[0])
    n = snprintf(out, cap, "%s", rel);
  else
    n = snprintf(out, cap, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", rel);
  if (n < 0 || (size_t)n >= cap) return kg_error(KG_ERR_ARG, "path too long: %s/%s", dir ? dir : "", rel);
  return KG_OK;
}

int kg_data_path(char *out, size_t cap, const char *rel) {
  return kg_path_join(out, cap, kg_data_dir(), rel);
}

int kg_mkdir_p(const char *dir) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf)) return kg_error(KG_ERR_ARG, "path too long: %s", dir);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return kg_error(KG_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST) return kg_error(KG_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
  if (!kg_path_is_dir(buf)) return kg_error(KG_ERR_IO, "%s exists and is not a directory", buf);
  return KG_OK;
}
