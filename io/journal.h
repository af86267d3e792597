/* The crash-safe journal of finished grid cells.
 *
 * An append-only text file, one JSON object per line:
 *   {"crc32":"1a2b3c4d","record":{"cell":"...","status":"done","attempts":1,
 *     "wall_s":12.5,"host":"node07","error":"","values":[
 *       {"var":"ppl","index":[0,2,1],"type":"f64","value":23.41}, ...]}}
 * `crc32` is the IEEE CRC-32 (as zlib.crc32) of the exact bytes of the
 * "record" value, so damage is detected rather than applied. Non-finite
 * floats are written as the strings "nan", "inf", "-inf".
 *
 * Each append is one write() of the whole line followed by fsync() before it
 * returns, so a record that was acknowledged survives a crash. A crash during
 * an append can leave a torn last line (no newline at the end); replay skips
 * it (reported at debug level) and kg_journal_open cuts it off before
 * appending. One process appends to a journal at a time (the coordinator).
 *
 * A cell may appear more than once (failed, then done on a retry); replay
 * gives records in file order, so applying them in order leaves the latest.
 */
#ifndef KG_IO_JOURNAL_H
#define KG_IO_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "io/cube.h"

typedef enum kg_journal_status {
  KG_JOURNAL_DONE = 0,
  KG_JOURNAL_FAILED = 1,
} kg_journal_status;

/* One value to store into the cube: variable `var` at `index` (one entry per
 * axis of the variable). The member matching `type` holds the value. */
typedef struct kg_journal_entry {
  const char *var;
  int ndims;
  const int64_t *index;
  kg_cube_type type;
  double f64;
  int32_t i32;
  const char *str;
} kg_journal_entry;

typedef struct kg_journal_record {
  const char *cell; /* the coordinator's key for the grid cell */
  kg_journal_status status;
  int attempts;
  double wall_s;
  const char *host;  /* NULL is written as "" */
  const char *error; /* NULL is written as ""; invalid UTF-8 bytes become '?' */
  int n_entries;
  const kg_journal_entry *entries;
} kg_journal_record;

typedef struct kg_journal kg_journal;

/* Opens (creating if needed) `path` for appending; a torn last line left by
 * an interrupted append is cut off first. *out is owned by the caller (close
 * with kg_journal_close). */
int kg_journal_open(const char *path, kg_journal **out);
/* Appends one record and fsyncs it. On failure the file is cut back to its
 * previous length, so a failed append never leaves a partial line. */
int kg_journal_append(kg_journal *j, const kg_journal_record *rec);
/* Closes the file; returns an error when close reports one. NULL is fine. */
int kg_journal_close(kg_journal *j);

typedef struct kg_journal_stats {
  int64_t records; /* complete records handed to the callback */
  int64_t torn;    /* 0 or 1: an unterminated last line that was skipped */
  int64_t corrupt; /* complete lines skipped for a bad checksum or bad JSON */
} kg_journal_stats;

/* Called once per valid record, in file order. The record and its strings
 * are owned by the replay and valid only during the call. Returning a
 * negative code stops the replay, which returns that code. */
typedef int (*kg_journal_replay_fn)(const kg_journal_record *rec, void *user);

/* Reads `path` and calls fn for every valid record. A torn last line is
 * skipped (debug log). A damaged complete line (checksum mismatch or
 * malformed JSON) is skipped with a warning naming the line unless `strict`
 * is set, in which case replay stops with KG_ERR_FORMAT. A missing file is
 * KG_ERR_NOT_FOUND. stats may be NULL. */
int kg_journal_replay(const char *path, int strict, kg_journal_replay_fn fn, void *user, kg_journal_stats *stats);

/* Stores every entry of rec into the cube. Errors name the variable and the
 * cell key: an unknown variable, a type mismatch, a wrong index count or an
 * index outside the cube. Entries before the failing one stay applied. */
int kg_journal_apply(kg_cube *cube, const kg_journal_record *rec);

/* IEEE CRC-32 (the zlib/PNG one) of len bytes, continuing from crc (0 to
 * start). */
uint32_t kg_crc32(uint32_t crc, const void *data, size_t len);

#endif
