#include "io/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_level = KG_LOG_INFO;
static char log_tag[64];
static FILE *log_tee;

void kg_log_tee(FILE *f) { log_tee = f; }

void kg_log_set_level(int level) { log_level = level; }
int kg_log_get_level(void) { return log_level; }

void kg_log_set_tag(const char *tag) {
  snprintf(log_tag, sizeof(log_tag), "%s", tag ? tag : "");
}

void kg_log(int level, const char *fmt, ...) {
  if (level > log_level) return;
  static const char *names[] = {"error", "warning", "", "debug"};
  char line[4096];
  int n = 0;
  if (log_tag[0]) n += snprintf(line + n, sizeof(line) - n, "[%s] ", log_tag);
  if (level != KG_LOG_INFO && n < (int)sizeof(line))
    n += snprintf(line + n, sizeof(line) - n, "%s: ", names[level]);
  if (n < (int)sizeof(line)) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
  }
  fprintf(stderr, "%s\n", line);
  if (log_tee) {
    fprintf(log_tee, "%s\n", line);
    fflush(log_tee);
  }
}

double kg_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(double s, char *out, size_t cap) {
  if (s < 0 || s > 1e7) {
    snprintf(out, cap, "--");
  } else if (s < 60) {
    snprintf(out, cap, "%.0fs", s);
  } else if (s < 3600) {
    snprintf(out, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
  } else {
    snprintf(out, cap, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
  }
}

void kg_progress_begin(kg_progress *p, const char *label, int64_t total) {
  memset(p, 0, sizeof(*p));
  snprintf(p->label, sizeof(p->label), "%s", label);
  p->total = total;
  p->start_s = kg_now();
  p->last_print_s = p->start_s;
  p->on_tty = isatty(STDERR_FILENO);
}

static void progress_print(kg_progress *p, int final) {
  double elapsed = kg_now() - p->start_s;
  double rate = elapsed > 0 ? (double)p->done / elapsed : 0.0;
  char eta[32], took[32];
  format_duration(rate > 0 ? (double)(p->total - p->done) / rate : -1, eta, sizeof(eta));
  format_duration(elapsed, took, sizeof(took));
  if (final) {
    fprintf(stderr, "%s%s: %lld/%lld in %s (%.2f/s)%s\n", p->on_tty ? "\r" : "", p->label,
            (long long)p->done, (long long)p->total, took, rate, p->on_tty ? "\033[K" : "");
  } else {
    fprintf(stderr, "%s%s: %lld/%lld  %.2f/s  elapsed %s  ETA %s%s", p->on_tty ? "\r" : "",
            p->label, (long long)p->done, (long long)p->total, rate, took, eta,
            p->on_tty ? "\033[K" : "\n");
  }
  fflush(stderr);
}

void kg_progress_update(kg_progress *p, int64_t done) {
  p->done = done;
  if (kg_log_get_level() < KG_LOG_INFO) return;
  double now = kg_now();
  double every = p->on_tty ? 0.25 : 10.0;
  if (now - p->last_print_s < every) return;
  p->last_print_s = now;
  progress_print(p, 0);
}

void kg_progress_end(kg_progress *p) {
  if (kg_log_get_level() < KG_LOG_INFO) return;
  progress_print(p, 1);
}
