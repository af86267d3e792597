#include "io/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/error.h"

int kg_mapped_file_open(const char *path, kg_mapped_file **out) {
  int rc = KG_OK;
  int fd = -1;
  kg_mapped_file *f = calloc(1, sizeof(*f));
  if (!f || !(f->path = strdup(path))) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto done;
  }
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = kg_error(errno == ENOENT ? KG_ERR_NOT_FOUND : KG_ERR_IO, "%s: %s", path, strerror(errno));
    goto done;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = kg_error(KG_ERR_IO, "%s: %s", path, strerror(errno));
    goto done;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = kg_error(KG_ERR_IO, "%s: not a regular file", path);
    goto done;
  }
  f->size = (size_t)st.st_size;
  if (f->size > 0) {
    void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      rc = kg_error(KG_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
      goto done;
    }
    f->data = p;
  }
done:
  if (fd >= 0) close(fd);
  if (rc < 0) {
    kg_mapped_file_close(f);
    f = NULL;
  }
  *out = f;
  return rc;
}

void kg_mapped_file_close(kg_mapped_file *f) {
  if (!f) return;
  if (f->data) munmap((void *)f->data, f->size);
  free(f->path);
  free(f);
}

int kg_read_file(const char *path, char **out, size_t *out_size) {
  int rc = KG_OK;
  char *buf = NULL;
  FILE *fp = fopen(path, "rb");
  *out = NULL;
  if (!fp) {
    return kg_error(errno == ENOENT ? KG_ERR_NOT_FOUND : KG_ERR_IO, "%s: %s", path, strerror(errno));
  }
  if (fseek(fp, 0, SEEK_END) != 0) {
    rc = kg_error(KG_ERR_IO, "%s: cannot seek", path);
    goto done;
  }
  long size = ftell(fp);
  if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) {
    rc = kg_error(KG_ERR_IO, "%s: cannot determine size", path);
    goto done;
  }
  buf = malloc((size_t)size + 1);
  if (!buf) {
    rc = kg_error(KG_ERR_NOMEM, "%s: out of memory reading %ld bytes", path, size);
    goto done;
  }
  if (size > 0 && fread(buf, 1, (size_t)size, fp) != (size_t)size) {
    rc = kg_error(KG_ERR_IO, "%s: short read", path);
    goto done;
  }
  buf[size] = '\0';
  if (out_size) *out_size = (size_t)size;
  *out = buf;
  buf = NULL;
done:
  free(buf);
  fclose(fp);
  return rc;
}
