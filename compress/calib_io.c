/* Calibration sets as NumPy .npy files (int32, C order, [nsamples, seqlen]),
 * so they can be inspected in a notebook and re-imported bit-exactly. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress/calib.h"
#include "io/error.h"
#include "io/mapfile.h"

int kg_calib_export(const kg_calib_set *set, const char *path) {
  int rc = KG_OK;
  char tmp[4096];
  FILE *f = NULL;
  if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
    return kg_error(KG_ERR_ARG, "path too long: %s", path);
  char header[256];
  int hl = snprintf(header, sizeof(header), "{'descr': '<i4', 'fortran_order': False, 'shape': (%d, %d), }",
                    set->nsamples, set->seqlen);
  /* magic(6) + version(2) + length(2) + header, padded with spaces to a
   * multiple of 64 and ended by '\n', as the format asks. */
  int total = 10 + hl + 1;
  int pad = (64 - total % 64) % 64;
  if (!(f = fopen(tmp, "wb"))) {
    rc = kg_error(KG_ERR_IO, "%s: %s", tmp, strerror(errno));
    goto done;
  }
  unsigned short hlen = (unsigned short)(hl + pad + 1);
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
  size_t n = (size_t)set->nsamples * set->seqlen;
  if (fwrite(pre, 1, 10, f) != 10 || fwrite(header, 1, (size_t)hl, f) != (size_t)hl) goto write_error;
  for (int i = 0; i < pad; i++)
    if (fputc(' ', f) == EOF) goto write_error;
  if (fputc('\n', f) == EOF || fwrite(set->tokens, sizeof(int32_t), n, f) != n) goto write_error;
  if (fflush(f) != 0 || fsync(fileno(f)) != 0) goto write_error;
  fclose(f);
  f = NULL;
  if (rename(tmp, path) != 0) {
    rc = kg_error(KG_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    goto done;
  }
  return KG_OK;
write_error:
  rc = kg_error(KG_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
done:
  if (f) fclose(f);
  unlink(tmp);
  return rc;
}

int kg_calib_import(const char *path, kg_calib_set **out) {
  int rc = KG_OK;
  kg_mapped_file *f = NULL;
  kg_calib_set *set = NULL;
  *out = NULL;
  if ((rc = kg_mapped_file_open(path, &f)) < 0) return rc;
  const unsigned char *d = f->data;
  if (f->size < 10 || memcmp(d, "\x93NUMPY", 6) != 0) {
    rc = kg_error(KG_ERR_FORMAT, "%s: not a .npy file", path);
    goto done;
  }
  size_t hlen, off;
  if (d[6] == 1) {
    hlen = (size_t)d[8] | ((size_t)d[9] << 8);
    off = 10;
  } else if (d[6] == 2 || d[6] == 3) {
    if (f->size < 12) {
      rc = kg_error(KG_ERR_FORMAT, "%s: truncated .npy header", path);
      goto done;
    }
    hlen = (size_t)d[8] | ((size_t)d[9] << 8) | ((size_t)d[10] << 16) | ((size_t)d[11] << 24);
    off = 12;
  } else {
    rc = kg_error(KG_ERR_FORMAT, "%s: unsupported .npy version %d", path, d[6]);
    goto done;
  }
  if (hlen > 65536 || off + hlen > f->size) {
    rc = kg_error(KG_ERR_FORMAT, "%s: truncated .npy header", path);
    goto done;
  }
  char header[65537];
  memcpy(header, d + off, hlen);
  header[hlen] = '\0';
  const char *descr = strstr(header, "'descr'");
  const char *fortran = strstr(header, "'fortran_order'");
  const char *shape = strstr(header, "'shape'");
  int rows = 0, cols = 0;
  if (!descr || !strstr(descr, "'<i4'") || !fortran || !strstr(fortran, "False") || !shape ||
      sscanf(strchr(shape, '(') ? strchr(shape, '(') : "", "(%d, %d)", &rows, &cols) != 2) {
    rc = kg_error(KG_ERR_FORMAT, "%s: expected a C-order int32 array of shape (nsamples, seqlen)", path);
    goto done;
  }
  if (rows <= 0 || cols < 2) {
    rc = kg_error(KG_ERR_FORMAT, "%s: bad calibration shape (%d, %d)", path, rows, cols);
    goto done;
  }
  size_t bytes = (size_t)rows * cols * sizeof(int32_t);
  if (off + hlen + bytes != f->size) {
    rc = kg_error(KG_ERR_FORMAT, "%s: %zu data bytes for shape (%d, %d), expected %zu", path, f->size - off - hlen, rows,
                  cols, bytes);
    goto done;
  }
  if (!(set = calloc(1, sizeof(*set))) || !(set->tokens = malloc(bytes))) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto done;
  }
  memcpy(set->tokens, d + off + hlen, bytes);
  set->nsamples = rows;
  set->seqlen = cols;
  snprintf(set->source, sizeof(set->source), "tokens:%s", path);
  for (size_t i = 0; i < (size_t)rows * cols; i++)
    if (set->tokens[i] < 0) {
      rc = kg_error(KG_ERR_FORMAT, "%s: negative token id %d at index %zu", path, set->tokens[i], i);
      goto done;
    }
  *out = set;
  set = NULL;
done:
  kg_calib_free(set);
  kg_mapped_file_close(f);
  return rc;
}
