/* Logging and progress lines on stderr.
 *
 * Progress uses a carriage-return line on a terminal and a plain line at most
 * every few seconds otherwise, so logs of batch jobs stay readable. */
#ifndef KG_IO_LOG_H
#define KG_IO_LOG_H

#include <stdint.h>
#include <stdio.h>

enum kg_log_level { KG_LOG_ERROR = 0, KG_LOG_WARN = 1, KG_LOG_INFO = 2, KG_LOG_DEBUG = 3 };

void kg_log_set_level(int level);
int kg_log_get_level(void);
/* A short tag printed before every line, e.g. "rank 3"; copied. */
void kg_log_set_tag(const char *tag);
/* Also writes every line to `f` (per-cell log files); NULL stops. The
 * caller keeps ownership of f. */
void kg_log_tee(FILE *f);
void kg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define kg_info(...) kg_log(KG_LOG_INFO, __VA_ARGS__)
#define kg_warn(...) kg_log(KG_LOG_WARN, __VA_ARGS__)
#define kg_debug(...) kg_log(KG_LOG_DEBUG, __VA_ARGS__)

/* Seconds on a monotonic clock. */
double kg_now(void);

typedef struct kg_progress {
  char label[64];
  int64_t total;
  int64_t done;
  double start_s;
  double last_print_s;
  int on_tty;
} kg_progress;

void kg_progress_begin(kg_progress *p, const char *label, int64_t total);
/* Prints "label  done/total  rate/s  ETA" when enough time has passed. */
void kg_progress_update(kg_progress *p, int64_t done);
void kg_progress_end(kg_progress *p);

#endif
