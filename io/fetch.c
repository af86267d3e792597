/* GNU: mkostemp, pipe2. */
#ifdef KG_HAVE_CURL
#include <curl/curl.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/data_internal.h"
#include "io/error.h"
#include "io/log.h"
#include "io/manifest.h"
#include "io/paths.h"

extern char **environ;

/* Downloads smaller than this print no progress lines. */
#define PROGRESS_MIN_BYTES ((int64_t)4 << 20)

#ifdef KG_HAVE_CURL
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code = CURLE_OK;
static void curl_init_once(void) { curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct download_ctx {
  kg_data_sink *sink;
  int failed; /* the sink refused bytes; its kg_error message stands */
  int show_progress;
  kg_progress progress;
} download_ctx;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user) {
  download_ctx *d = user;
  size_t n = size * nmemb;
  if (kg_data_sink_write(d->sink, ptr, n) < 0) {
    d->failed = 1;
    return 0; /* makes curl stop with CURLE_WRITE_ERROR */
  }
  return n;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
  download_ctx *d = user;
  if (!d->show_progress) return 0;
  if (dltotal > 0) d->progress.total = (int64_t)dltotal;
  if (d->progress.total >= PROGRESS_MIN_BYTES) kg_progress_update(&d->progress, (int64_t)dlnow);
  return 0;
}

/* Streams `url` into the sink. Errors name the URL and say what went wrong. */
static int download(const char *url, kg_data_sink *sink, const char *label, int quiet) {
  int rc = KG_OK;
  char errbuf[CURL_ERROR_SIZE] = "";
  download_ctx d;
  CURL *curl = NULL;
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_code != CURLE_OK) return kg_error(KG_ERR_IO, "libcurl: %s", curl_easy_strerror(curl_init_code));
  if (!(curl = curl_easy_init())) return kg_error(KG_ERR_NOMEM, "libcurl: cannot create a handle");
  memset(&d, 0, sizeof(d));
  d.sink = sink;
  d.show_progress = !quiet;
  kg_progress_begin(&d.progress, label, -1);
  curl_easy_setopt(curl, CURLOPT_URL, url);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https,file");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
  /* A stalled transfer ends instead of hanging a batch job. */
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "kickgrid/" KG_VERSION);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &d);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &d);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  CURLcode cc = curl_easy_perform(curl);
  if (d.progress.total >= PROGRESS_MIN_BYTES && d.show_progress) kg_progress_end(&d.progress);
  if (d.failed) {
    rc = kg_error_code() ? kg_error_code() : KG_ERR_IO; /* the sink's message names the URL */
  } else if (cc == CURLE_HTTP_RETURNED_ERROR) {
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    rc = kg_error(status == 404 ? KG_ERR_NOT_FOUND : KG_ERR_IO, "%s: HTTP %ld", url, status);
  } else if (cc != CURLE_OK) {
    rc = kg_error(cc == CURLE_FILE_COULDNT_READ_FILE ? KG_ERR_NOT_FOUND : KG_ERR_IO, "%s: %s", url,
                  errbuf[0] ? errbuf : curl_easy_strerror(cc));
  }
  curl_easy_cleanup(curl);
  return rc;
}
#else
/* Built without libcurl (e.g. a minimal GPU-node build): nothing to download with. */
static int download(const char *url, kg_data_sink *sink, const char *label, int quiet) {
  (void)sink;
  (void)label;
  (void)quiet;
  return kg_error(KG_ERR_UNSUPPORTED, "cannot download %s: this build of kickgrid has no libcurl", url);
}
#endif

/* A decompressor's stdout (or a plain file) to read a source's bytes from. */
typedef struct source_reader {
  FILE *fp;
  pid_t pid;       /* 0 when fp is a plain file */
  FILE *stderr_fp; /* the tool's stderr, for the error message */
  const char *tool;
} source_reader;

static int open_reader(const kg_data_source *s, const char *archive_path, source_reader *r) {
  int rc = KG_OK;
  int pipefd[2] = {-1, -1};
  int have_actions = 0;
  posix_spawn_file_actions_t actions;
  /* Paths are passed as arguments: one starting with '-' would be an option. */
  char path_arg[PATH_MAX + 2];
  snprintf(path_arg, sizeof(path_arg), "%s%s", archive_path[0] == '-' ? "./" : "", archive_path);
  memset(r, 0, sizeof(*r));
  if (!s->archive) {
    if (!(r->fp = fopen(archive_path, "rbe"))) return kg_error(KG_ERR_IO, "%s: %s", archive_path, strerror(errno));
    return KG_OK;
  }
  char *argv[6] = {0};
  if (!strcmp(s->archive, "zip")) {
    char *a[] = {"unzip", "-p", path_arg, s->member, NULL};
    memcpy(argv, a, sizeof(a));
  } else if (!strcmp(s->archive, "tgz")) {
    char *a[] = {"tar", "-xzOf", path_arg, s->member, NULL};
    memcpy(argv, a, sizeof(a));
  } else if (!strcmp(s->archive, "bz2")) {
    char *a[] = {"bzip2", "-dc", path_arg, NULL};
    memcpy(argv, a, sizeof(a));
  } else {
    char *a[] = {"gzip", "-dc", path_arg, NULL};
    memcpy(argv, a, sizeof(a));
  }
  r->tool = argv[0];
  if (!(r->stderr_fp = tmpfile())) {
    rc = kg_error(KG_ERR_IO, "cannot create a temporary file for %s's messages: %s", r->tool, strerror(errno));
    goto done;
  }
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    rc = kg_error(KG_ERR_IO, "pipe: %s", strerror(errno));
    goto done;
  }
  if ((errno = posix_spawn_file_actions_init(&actions)) != 0) {
    rc = kg_error(KG_ERR_NOMEM, "posix_spawn: %s", strerror(errno));
    goto done;
  }
  have_actions = 1;
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fileno(r->stderr_fp), STDERR_FILENO);
  int err = posix_spawnp(&r->pid, argv[0], &actions, NULL, argv, environ);
  if (err != 0) {
    r->pid = 0;
    rc = kg_error(KG_ERR_UNSUPPORTED, "cannot run %s to unpack %s: %s (is it installed?)", argv[0], archive_path,
                  strerror(err));
    goto done;
  }
  close(pipefd[1]);
  pipefd[1] = -1;
  if (!(r->fp = fdopen(pipefd[0], "rb"))) {
    rc = kg_error(KG_ERR_IO, "fdopen: %s", strerror(errno));
    goto done;
  }
  pipefd[0] = -1;
done:
  if (have_actions) posix_spawn_file_actions_destroy(&actions);
  if (pipefd[0] >= 0) close(pipefd[0]);
  if (pipefd[1] >= 0) close(pipefd[1]);
  return rc;
}

/* Closes the reader and reaps the tool. When the whole output was read, the
 * tool must have succeeded (a truncated archive shows up here). */
static int close_reader(source_reader *r, int consumed_all, const char *what) {
  int rc = KG_OK;
  if (r->fp) fclose(r->fp);
  r->fp = NULL;
  if (r->pid > 0) {
    int status = 0;
    while (waitpid(r->pid, &status, 0) < 0 && errno == EINTR) {
    }
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (consumed_all && !ok) {
      char msg[256] = "";
      if (r->stderr_fp) {
        rewind(r->stderr_fp);
        if (!fgets(msg, sizeof(msg), r->stderr_fp)) msg[0] = '\0';
        msg[strcspn(msg, "\r\n")] = '\0';
      }
      rc = kg_error(KG_ERR_FORMAT, "%s: %s failed (%s %d)%s%s", what, r->tool,
                    WIFEXITED(status) ? "exit status" : "signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), msg[0] ? ": " : "", msg);
    }
    r->pid = 0;
  }
  if (r->stderr_fp) fclose(r->stderr_fp);
  r->stderr_fp = NULL;
  return rc;
}

/* Creates DEST.SUFFIX-XXXXXX beside the destination and opens it. */
static int make_temp(const char *dest, const char *suffix, char *path, size_t cap, FILE **fp) {
  *fp = NULL;
  int n = snprintf(path, cap, "%s.%s-XXXXXX", dest, suffix);
  if (n < 0 || (size_t)n >= cap) return kg_error(KG_ERR_ARG, "path too long: %s", dest);
  int fd = mkostemp(path, O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    path[0] = '\0';
    return kg_error(KG_ERR_IO, "cannot create a file beside %s: %s%s", dest, strerror(err),
                    err == EACCES || err == EROFS ? " (point --data-dir or KG_DATA_DIR at a writable directory)" : "");
  }
  fchmod(fd, 0644);
  if (!(*fp = fdopen(fd, "wb"))) {
    close(fd);
    return kg_error(KG_ERR_IO, "%s: %s", path, strerror(errno));
  }
  return KG_OK;
}

static int close_written(FILE **fp, const char *path) {
  int rc = KG_OK;
  if (!*fp) return KG_OK;
  if (fflush(*fp) != 0 || fsync(fileno(*fp)) != 0) rc = kg_error(KG_ERR_IO, "%s: %s", path, strerror(errno));
  if (fclose(*fp) != 0 && rc == KG_OK) rc = kg_error(KG_ERR_IO, "%s: %s", path, strerror(errno));
  *fp = NULL;
  return rc;
}

/* One source: download, unpack, transform, check, rename into place. */
static int fetch_source(const kg_data_entry *e, const kg_data_source *s, const char *url, const char *dest,
                        int quiet) {
  int rc = KG_OK;
  char part[PATH_MAX] = "", download_path[PATH_MAX] = "", hex[KG_SHA256_HEX_CHARS];
  FILE *part_fp = NULL, *download_fp = NULL;
  source_reader reader = {0};
  kg_data_sink out;
  int direct = !s->archive && !s->transform;
  if ((rc = make_temp(dest, "part", part, sizeof(part), &part_fp)) < 0) goto done;
  kg_data_sink_init(&out, part_fp, url, e->size);
  if (direct) {
    if ((rc = download(url, &out, e->name, quiet)) < 0) goto done;
  } else {
    kg_data_sink raw;
    if ((rc = make_temp(dest, "download", download_path, sizeof(download_path), &download_fp)) < 0) goto done;
    kg_data_sink_init(&raw, download_fp, url, s->archive_size);
    if ((rc = download(url, &raw, e->name, quiet)) < 0 || (rc = close_written(&download_fp, download_path)) < 0)
      goto done;
    kg_data_sink_digest(&raw, hex);
    if ((s->archive_size >= 0 && raw.bytes != s->archive_size) ||
        (s->archive_sha256 && strcmp(hex, s->archive_sha256) != 0)) {
      char want_size[32] = "any size";
      if (s->archive_size >= 0) snprintf(want_size, sizeof(want_size), "%lld bytes", (long long)s->archive_size);
      rc = kg_error(KG_ERR_FORMAT, "%s: download is %lld bytes with sha256 %.16s..., expected %s with sha256 %.16s...",
                    url, (long long)raw.bytes, hex, want_size, s->archive_sha256 ? s->archive_sha256 : "(any)");
      goto done;
    }
    char what[PATH_MAX + 64];
    snprintf(what, sizeof(what), "%s%s%s", url, s->member ? ":" : "", s->member ? s->member : "");
    if ((rc = open_reader(s, download_path, &reader)) < 0) goto done;
    int consumed_all = 0;
    rc = kg_data_transform_run(s->transform, s->transform_count, s->transform_field, what, reader.fp, &out,
                               &consumed_all);
    int rc_close = close_reader(&reader, rc == KG_OK && consumed_all, what);
    if (rc == KG_OK) rc = rc_close;
    if (rc < 0) goto done;
  }
  if ((rc = close_written(&part_fp, part)) < 0) goto done;
  kg_data_sink_digest(&out, hex);
  if (out.bytes != e->size || strcmp(hex, e->sha256) != 0) {
    rc = kg_error(KG_ERR_FORMAT,
                  "%s: checksum mismatch: got %lld bytes with sha256 %s, expected %lld bytes with sha256 %s; "
                  "the file was deleted",
                  url, (long long)out.bytes, hex, (long long)e->size, e->sha256);
    goto done;
  }
  if (rename(part, dest) != 0) {
    rc = kg_error(KG_ERR_IO, "cannot move %s to %s: %s", part, dest, strerror(errno));
    goto done;
  }
  part[0] = '\0';
done:
  close_reader(&reader, 0, url);
  if (part_fp) fclose(part_fp);
  if (download_fp) fclose(download_fp);
  if (part[0]) unlink(part);
  if (download_path[0]) unlink(download_path);
  return rc;
}

/* Drops the last path component in place; false when there is none. */
static int cut_last_component(char *path) {
  char *slash = strrchr(path, '/');
  if (!slash || slash == path) return 0;
  *slash = '\0';
  return 1;
}

/* Mode bits count too: a directory marked read-only (like a shared 0555 data
 * directory) is left alone even by root, for whom access() always succeeds. */
static int dir_writable(const char *dir) {
  struct stat st;
  return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0222) && access(dir, W_OK | X_OK) == 0;
}

/* Removes the directories fetch created below `anchor` that stayed empty. */
static void remove_created_dirs(char *dir, const char *anchor) {
  size_t anchor_len = strlen(anchor);
  while (strlen(dir) > anchor_len && rmdir(dir) == 0)
    if (!cut_last_component(dir)) break;
}

static kg_data_state fetch_entry(const kg_data_entry *e, const kg_data_options *opt, char *detail, size_t cap) {
  char dest[PATH_MAX], dir[PATH_MAX], anchor[PATH_MAX], url[4096];
  const char *mirror = opt && opt->mirror ? opt->mirror : getenv("KG_DATA_MIRROR");
  size_t used = 0;
  detail[0] = '\0';
  if (kg_data_entry_file(e, dest, sizeof(dest)) < 0) {
    snprintf(detail, cap, "%s", kg_error_message());
    return KG_DATA_FETCH_FAILED;
  }
  snprintf(dir, sizeof(dir), "%s", dest);
  if (!cut_last_component(dir)) snprintf(dir, sizeof(dir), ".");
  snprintf(anchor, sizeof(anchor), "%s", dir);
  while (!kg_path_exists(anchor) && cut_last_component(anchor)) {
  }
  if (!dir_writable(anchor)) {
    snprintf(detail, cap, "%s is not writable; point --data-dir or KG_DATA_DIR (KG_CACHE_DIR for models) at a "
             "writable directory", anchor);
    return KG_DATA_FETCH_FAILED;
  }
  if (kg_mkdir_p(dir) < 0) {
    snprintf(detail, cap, "%s", kg_error_message());
    remove_created_dirs(dir, anchor);
    return KG_DATA_FETCH_FAILED;
  }
  for (size_t i = 0; i < e->n_sources; i++) {
    const kg_data_source *s = &e->sources[i];
    int rc = kg_data_mirror_url(s->url, mirror, url, sizeof(url));
    if (rc == KG_OK) {
      kg_debug("fetch %s: source %zu: %s", e->name, i + 1, url);
      rc = fetch_source(e, s, url, dest, opt && opt->quiet);
    }
    if (rc == KG_OK) {
      snprintf(detail, cap, "%s", url);
      return KG_DATA_FETCHED;
    }
    int n = snprintf(detail + used, cap - used, "%ssource %zu: %s", used ? "; " : "", i + 1, kg_error_message());
    if (n > 0) used = used + (size_t)n < cap ? used + (size_t)n : cap - 1;
    kg_error_clear();
  }
  remove_created_dirs(dir, anchor);
  return KG_DATA_FETCH_FAILED;
}

int kg_data_fetch(const kg_manifest *m, const kg_data_options *opt, kg_data_summary *sum) {
  return kg_data_walk(m, opt, sum, fetch_entry, "fetch");
}
