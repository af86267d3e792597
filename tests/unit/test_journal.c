/* The journal: append/replay round trip, torn last lines, checksums, failed
 * appends cut back, applying records to a cube. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/cube.h"
#include "io/error.h"
#include "io/journal.h"
#include "kgtest.h"

static char tmpdir[256];

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Record i of a deterministic series: failed every third, with every value type. */
typedef struct {
  char cell[64], error[64];
  int64_t idx[3][3];
  kg_journal_entry entries[3];
  kg_journal_record rec;
} sample;

static void make_sample(sample *s, int i) {
  memset(s, 0, sizeof(*s));
  snprintf(s->cell, sizeof(s->cell), "model=m/prune_method=%d/sparsity=%d", i % 3, i);
  s->rec.cell = s->cell;
  s->rec.status = i % 3 == 2 ? KG_JOURNAL_FAILED : KG_JOURNAL_DONE;
  s->rec.attempts = 1 + i % 2;
  s->rec.wall_s = 0.1 * i + 1.0 / 3.0;
  s->rec.host = "node\"07\"\n";
  if (i % 3 == 2) snprintf(s->error, sizeof(s->error), "out of memory at layer %d", i);
  else s->error[0] = '\0';
  s->rec.error = s->error;
  for (int k = 0; k < 3; k++) {
    s->idx[k][0] = 0;
    s->idx[k][1] = i % 3;
    s->idx[k][2] = i % 4;
  }
  static const double specials[] = {NAN, INFINITY, -INFINITY, -0.0, 1e-300, 123456789.123456789};
  s->entries[0] = (kg_journal_entry){.var = "ppl", .ndims = 3, .index = s->idx[0], .type = KG_CUBE_F64,
                                     .f64 = i < 6 ? specials[i] : 10.0 + i / 7.0};
  s->entries[1] = (kg_journal_entry){.var = "nnz", .ndims = 3, .index = s->idx[1], .type = KG_CUBE_I32, .i32 = -1000 * i};
  s->entries[2] = (kg_journal_entry){.var = "status", .ndims = 3, .index = s->idx[2], .type = KG_CUBE_STR,
                                     .str = i % 3 == 2 ? "failed" : "d\xc3\xb6ne \"quoted\""};
  s->rec.n_entries = 3;
  s->rec.entries = s->entries;
}

static int same_f64(double a, double b) {
  return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}

typedef struct {
  int seen;
  int mismatches;
  int stop_after;
} replay_check;

static int check_record(const kg_journal_record *r, void *user) {
  replay_check *rc = user;
  sample want;
  make_sample(&want, rc->seen);
  int ok = !strcmp(r->cell, want.rec.cell) && r->status == want.rec.status && r->attempts == want.rec.attempts &&
           same_f64(r->wall_s, want.rec.wall_s) && !strcmp(r->host, want.rec.host) &&
           !strcmp(r->error, want.rec.error) && r->n_entries == 3;
  for (int k = 0; ok && k < 3; k++) {
    const kg_journal_entry *a = &r->entries[k], *b = &want.entries[k];
    ok = !strcmp(a->var, b->var) && a->ndims == b->ndims && a->type == b->type;
    for (int d = 0; ok && d < a->ndims; d++) ok = a->index[d] == b->index[d];
    if (ok && a->type == KG_CUBE_F64) ok = same_f64(a->f64, b->f64);
    if (ok && a->type == KG_CUBE_I32) ok = a->i32 == b->i32;
    if (ok && a->type == KG_CUBE_STR) ok = !strcmp(a->str, b->str);
  }
  if (!ok) {
    fprintf(stderr, "record %d differs from what was appended\n", rc->seen);
    rc->mismatches++;
  }
  rc->seen++;
  if (rc->stop_after && rc->seen == rc->stop_after) return kg_error(KG_ERR_CANCELLED, "stop");
  return KG_OK;
}

static void append_n(const char *path, int from, int to) {
  kg_journal *j = NULL;
  CHECK_OK(kg_journal_open(path, &j));
  if (!j) return;
  for (int i = from; i < to; i++) {
    sample s;
    make_sample(&s, i);
    CHECK_OK(kg_journal_append(j, &s.rec));
  }
  CHECK_OK(kg_journal_close(j));
}

static void test_crc(void) {
  /* The standard CRC-32 check value. */
  CHECK(kg_crc32(0, "123456789", 9) == 0xCBF43926u);
  CHECK(kg_crc32(kg_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u);
  CHECK(kg_crc32(0, "", 0) == 0);
}

static void test_round_trip(const char *path) {
  append_n(path, 0, 5);
  append_n(path, 5, 9); /* reopening appends after the existing records */
  replay_check rc = {0};
  kg_journal_stats st;
  CHECK_OK(kg_journal_replay(path, 1, check_record, &rc, &st));
  CHECK(rc.seen == 9 && rc.mismatches == 0);
  CHECK(st.records == 9 && st.torn == 0 && st.corrupt == 0);
  /* The callback can stop the replay. */
  replay_check stop = {.stop_after = 4};
  CHECK(kg_journal_replay(path, 1, check_record, &stop, NULL) == KG_ERR_CANCELLED);
  CHECK(stop.seen == 4);
  char missing[512];
  snprintf(missing, sizeof(missing), "%s/none.jsonl", tmpdir);
  CHECK(kg_journal_replay(missing, 0, check_record, &rc, NULL) == KG_ERR_NOT_FOUND);
}

static void test_torn_last_line(const char *path) {
  long complete = file_size(path);
  /* A crash mid-append: the start of a record without its newline. */
  FILE *f = fopen(path, "ab");
  fputs("{\"crc32\":\"0badc0de\",\"record\":{\"cell\":\"half-writ", f);
  fclose(f);
  replay_check rc = {0};
  kg_journal_stats st;
  CHECK_OK(kg_journal_replay(path, 1, check_record, &rc, &st));
  CHECK(rc.seen == 9 && rc.mismatches == 0 && st.torn == 1 && st.corrupt == 0);
  /* Opening for append cuts the torn tail; new records follow cleanly. */
  append_n(path, 9, 10);
  CHECK(file_size(path) > complete);
  memset(&rc, 0, sizeof(rc));
  CHECK_OK(kg_journal_replay(path, 1, check_record, &rc, &st));
  CHECK(rc.seen == 10 && rc.mismatches == 0 && st.torn == 0);
}

static void test_corruption(const char *path) {
  /* Change one digit inside the 4th record: still valid JSON, wrong checksum. */
  char *buf = NULL;
  long n = file_size(path);
  FILE *f = fopen(path, "rb");
  buf = malloc((size_t)n + 1);
  CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
  fclose(f);
  buf[n] = '\0';
  char *line = buf;
  for (int k = 0; k < 3; k++) line = strchr(line, '\n') + 1;
  char *digit = strstr(line, "\"attempts\":") + strlen("\"attempts\":");
  *digit = *digit == '1' ? '2' : '1';
  f = fopen(path, "wb");
  fwrite(buf, 1, (size_t)n, f);
  fclose(f);
  free(buf);
  kg_journal_stats st;
  int seen = 0;
  CHECK(kg_journal_replay(path, 1, NULL, &seen, &st) == KG_ERR_FORMAT);
  CHECK(strstr(kg_error_message(), ":4: checksum mismatch") != NULL);
  CHECK(st.records == 3 && st.corrupt == 1);
  CHECK_OK(kg_journal_replay(path, 0, NULL, NULL, &st));
  CHECK(st.records == 9 && st.corrupt == 1 && st.torn == 0);
}

/* A write that fails half-way (file size limit) must not leave a partial line. */
static void test_failed_append(const char *path) {
  long before = file_size(path);
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  kg_journal *j = NULL;
  CHECK_OK(kg_journal_open(path, &j));
  lim = old;
  lim.rlim_cur = (rlim_t)before + 40;
  CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  sample s;
  make_sample(&s, 0);
  CHECK(kg_journal_append(j, &s.rec) == KG_ERR_IO);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, prev);
  CHECK(file_size(path) == before);
  kg_journal_close(j);
  kg_journal_stats st;
  CHECK_OK(kg_journal_replay(path, 0, NULL, NULL, &st));
  CHECK(st.torn == 0);
}

static void test_bad_records(const char *path) {
  kg_journal *j = NULL;
  CHECK_OK(kg_journal_open(path, &j));
  if (!j) return;
  kg_journal_record r = {.cell = "", .status = KG_JOURNAL_DONE};
  CHECK(kg_journal_append(j, &r) == KG_ERR_ARG);
  r.cell = "c\xff";
  CHECK(kg_journal_append(j, &r) == KG_ERR_ARG);
  r.cell = "c";
  r.status = (kg_journal_status)7;
  CHECK(kg_journal_append(j, &r) == KG_ERR_ARG);
  int64_t idx[1] = {-1};
  kg_journal_entry e = {.var = "x", .ndims = 1, .index = idx, .type = KG_CUBE_F64};
  r.status = KG_JOURNAL_FAILED;
  r.entries = &e;
  r.n_entries = 1;
  CHECK(kg_journal_append(j, &r) == KG_ERR_ARG);
  /* Invalid UTF-8 in an error message is kept, with the bad bytes replaced. */
  idx[0] = 0;
  r.error = "bad \xff\xfe byte \xe2\x9c\x93";
  CHECK_OK(kg_journal_append(j, &r));
  kg_journal_close(j);
  kg_journal_stats st;
  CHECK_OK(kg_journal_replay(path, 1, NULL, NULL, &st));
  CHECK(st.records == 1);
}

static int capture_error(const kg_journal_record *r, void *user) {
  snprintf(user, 128, "%s", r->error);
  return KG_OK;
}

static int apply_record(const kg_journal_record *r, void *user) { return kg_journal_apply(user, r); }

static void test_apply(const char *path) {
  char err[128] = "";
  CHECK_OK(kg_journal_replay(path, 1, capture_error, err, NULL));
  CHECK_STR(err, "bad ?? byte \xe2\x9c\x93");

  char jpath[512];
  snprintf(jpath, sizeof(jpath), "%s/apply.jsonl", tmpdir);
  append_n(jpath, 0, 9);
  kg_cube *c = kg_cube_create();
  const char *m[] = {"m"}, *p[] = {"dense", "magnitude", "wanda"};
  const double s[] = {0.0, 0.25, 0.5, 0.75};
  kg_cube_add_dim_str(c, "model", m, 1);
  kg_cube_add_dim_str(c, "prune_method", p, 3);
  kg_cube_add_dim_f64(c, "sparsity", s, 4);
  const char *dims[] = {"model", "prune_method", "sparsity"};
  int ppl = kg_cube_add_var(c, "ppl", KG_CUBE_F64, dims, 3);
  int nnz = kg_cube_add_var(c, "nnz", KG_CUBE_I32, dims, 3);
  int st = kg_cube_add_var(c, "status", KG_CUBE_STR, dims, 3);
  CHECK_OK(kg_journal_replay(jpath, 1, apply_record, c, NULL));
  /* Later records win: cell (0,2,0) is written by i=2 (failed) then i=8 (failed). */
  int64_t idx[3] = {0, 2, 0};
  const char *v = NULL;
  int32_t n = 0;
  kg_cube_get_str(c, st, idx, &v);
  kg_cube_get_i32(c, nnz, idx, &n);
  CHECK_STR(v, "failed");
  CHECK(n == -8000);
  int64_t idx1[3] = {0, 1, 1};
  double x = 0;
  kg_cube_get_f64(c, ppl, idx1, &x);
  CHECK(isinf(x) && x > 0); /* i=1 */
  int64_t idx3[3] = {0, 0, 3};
  kg_cube_get_f64(c, ppl, idx3, &x);
  CHECK(x == 0.0 && signbit(x)); /* i=3 wrote -0.0 */
  /* Records that do not fit the cube are errors naming the cell. */
  int64_t out_of_range[3] = {0, 5, 0};
  kg_journal_entry e = {.var = "ppl", .ndims = 3, .index = out_of_range, .type = KG_CUBE_F64, .f64 = 1};
  kg_journal_record r = {.cell = "cell-x", .entries = &e, .n_entries = 1};
  CHECK(kg_journal_apply(c, &r) == KG_ERR_ARG);
  CHECK(strstr(kg_error_message(), "cell-x") != NULL);
  e.var = "nope";
  CHECK(kg_journal_apply(c, &r) == KG_ERR_NOT_FOUND);
  e.var = "ppl";
  e.ndims = 2;
  CHECK(kg_journal_apply(c, &r) == KG_ERR_FORMAT);
  e.ndims = 3;
  e.index = idx;
  e.type = KG_CUBE_I32;
  CHECK(kg_journal_apply(c, &r) == KG_ERR_ARG);
  kg_cube_free(c);
  unlink(jpath);
}

int main(void) {
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/kg_test_journal.XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  char path[512], path2[512];
  snprintf(path, sizeof(path), "%s/journal.jsonl", tmpdir);
  snprintf(path2, sizeof(path2), "%s/other.jsonl", tmpdir);
  test_crc();
  test_round_trip(path);
  test_torn_last_line(path);
  test_failed_append(path);
  test_corruption(path);
  test_bad_records(path2);
  test_apply(path2);
  unlink(path);
  unlink(path2);
  rmdir(tmpdir);
  return kgtest_finish("test_journal");
}
