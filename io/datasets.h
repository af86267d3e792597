/* Text sources for perplexity and calibration: WikiText-2, C4 (JSON Lines),
 * TinyStories and plain text files. These readers return text only; the
 * tokenization, windowing and token-level truncation live in evaluate/ and
 * compress/.
 *
 * Every function returns KG_OK or a negative kg_error code whose message names
 * the file (and the line, for line-oriented formats). Text handed back is
 * valid UTF-8 without NUL bytes and is NUL-terminated; lengths are in bytes.
 *
 * Ownership: strings returned through `char **text` belong to the caller
 * (free with kg_text_free or free). A kg_text_list owns its strings; release
 * it with kg_text_list_free. A list must start zeroed (kg_text_list l = {0}). */
#ifndef KG_IO_DATASETS_H
#define KG_IO_DATASETS_H

#include <stddef.h>

/* Paths of the shared text files, relative to the data directory. */
#define KG_WIKITEXT2_TEST_FILE "text/wikitext-2-raw/wiki.test.raw"
#define KG_C4_TRAIN_FILE "text/c4/c4-train.00000-of-01024.head.jsonl"
#define KG_C4_VALIDATION_FILE "text/c4/c4-validation.00000-of-00008.head.jsonl"
#define KG_TINYSTORIES_VALID_FILE "text/tinystories/TinyStories-valid.head.txt"
/* SparseGPT/Wanda join this many C4 validation documents before cutting the
 * tokens to 256 * seqlen; the shared head file holds 1,025 of them. */
#define KG_C4_VALIDATION_REFERENCE_DOCS 1100

typedef struct kg_text_list {
  char **texts;   /* count strings, each NUL-terminated, owned by the list */
  size_t *lens;   /* byte length of each string */
  size_t count;
  size_t capacity;
} kg_text_list;

void kg_text_list_free(kg_text_list *list); /* frees the strings; leaves *list zeroed */
/* Appends a copy of text[0, len). */
int kg_text_list_push(kg_text_list *list, const char *text, size_t len);
/* Joins texts [first, first + count) with `sep` between them into a new
 * string the caller owns. count is clamped to the list's end. */
int kg_text_list_join(const kg_text_list *list, size_t first, size_t count, const char *sep, char **out,
                      size_t *out_len);
void kg_text_free(char *text);

/* Whole plain-text file; rejects invalid UTF-8 and NUL bytes (file:line). */
int kg_text_file(const char *path, char **text, size_t *len);

/* JSON Lines: one object per non-blank line; appends the string value of
 * `field` of every line to *out. Errors name file:line (bad JSON, a missing or
 * non-string field, invalid UTF-8, an escaped NUL). On error *out keeps what
 * it held before the call plus nothing partial of the failing line. */
int kg_jsonl_texts(const char *path, const char *field, kg_text_list *out);

/* The rows Hugging Face `datasets` makes of a WikiText raw file (the
 * `wikitext` loading script): the file is read as UTF-8 text with universal
 * newlines ("\r\n" and "\r" become "\n"), one row per line with its "\n"
 * kept, and a row whose Python str.strip() is empty becomes "". */
int kg_wikitext_rows(const char *path, kg_text_list *rows);
/* "\n\n".join(rows): the string SparseGPT and Wanda tokenize for WikiText
 * perplexity (tokenizer("\n\n".join(testdata['text']))). */
int kg_wikitext_text(const char *path, char **text, size_t *len);
/* kg_wikitext_text of KG_WIKITEXT2_TEST_FILE in the data directory. */
int kg_wikitext2_test_text(char **text, size_t *len);

/* TinyStories text: stories separated by lines that read "<|endoftext|>"
 * (surrounding spaces/tabs/CR allowed). Each story is the text between two
 * separators with leading and trailing ASCII whitespace removed; empty
 * stories are skipped. Appends to *out. */
int kg_tinystories_texts(const char *path, kg_text_list *out);

/* The documents of the shared C4 head files (field "text"). */
int kg_c4_train_texts(kg_text_list *out);
int kg_c4_validation_texts(kg_text_list *out);
/* ' '.join of the first n_docs validation documents (the reference protocol
 * uses KG_C4_VALIDATION_REFERENCE_DOCS). When the file holds fewer, all are
 * joined; *n_used (may be NULL) says how many were. */
int kg_c4_validation_text(size_t n_docs, char **text, size_t *len, size_t *n_used);

/* Checks that buf[0, len) is UTF-8 as Python's strict codec accepts it (no
 * overlongs, surrogates or code points above U+10FFFF) and has no NUL byte.
 * Returns KG_OK, or KG_ERR_FORMAT naming `what`, the line and byte offset. */
int kg_text_check_utf8(const char *what, const char *buf, size_t len);

#endif
