/* Pre-tokenizers of byte-level BPE tokenizers (HF tokenizers semantics):
 * a sequence of steps, each splitting every current piece further. Regexes
 * run through PCRE2 in UTF mode with Unicode properties (UCP), JIT-compiled
 * when the library can; invalid UTF-8 never matches and stays in the gaps. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"
#include "io/tokenizer_internal.h"
#include "io/unicode.h"

const char kg_regex_gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char kg_regex_llama3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct step {
  pcre2_code *re;       /* NULL: no regex split in this step */
  int removed;          /* drop the matches instead of keeping them */
  int add_prefix_space; /* ByteLevel: prepend ' ' to pieces not starting with one */
} step;

struct kg_pretok {
  step *steps;
  size_t n;
  int bytelevel;
};

kg_pretok *kg_pretok_new(void) {
  kg_pretok *p = calloc(1, sizeof *p);
  if (!p) kg_error(KG_ERR_NOMEM, "tokenizer: out of memory");
  return p;
}

void kg_pretok_free(kg_pretok *p) {
  if (!p) return;
  for (size_t i = 0; i < p->n; i++) pcre2_code_free(p->steps[i].re);
  free(p->steps);
  free(p);
}

int kg_pretok_is_bytelevel(const kg_pretok *p) { return p && p->bytelevel; }

static int add_step(kg_pretok *p, step s, const char *name) {
  if (p->bytelevel) {
    pcre2_code_free(s.re);
    return kg_error(KG_ERR_UNSUPPORTED, "%s: pre-tokenizer steps after ByteLevel are not supported", name);
  }
  step *v = realloc(p->steps, (p->n + 1) * sizeof *v);
  if (!v) {
    pcre2_code_free(s.re);
    return kg_error(KG_ERR_NOMEM, "%s: out of memory", name);
  }
  p->steps = v;
  p->steps[p->n++] = s;
  return KG_OK;
}

static int compile(const char *pattern, size_t len, int literal, const char *name, pcre2_code **out) {
  int err = 0;
  PCRE2_SIZE erroff = 0;
  /* PCRE2_LITERAL refuses PCRE2_UCP, which a literal does not need */
  uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  *out = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &err, &erroff, NULL);
  if (!*out) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(err, msg, sizeof msg);
    return kg_error(KG_ERR_FORMAT, "%s: pre-tokenizer regex does not compile at offset %zu: %s", name, (size_t)erroff,
                    (const char *)msg);
  }
  /* The interpreter is the fallback when JIT is unavailable. */
  (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
  return KG_OK;
}

int kg_pretok_add_split(kg_pretok *p, const char *pattern, size_t len, int literal, int removed, const char *name) {
  step s = {NULL, removed, 0};
  KG_TRY(compile(pattern, len, literal, name, &s.re));
  return add_step(p, s, name);
}

int kg_pretok_add_digits(kg_pretok *p, int individual, const char *name) {
  const char *re = individual ? "\\p{N}" : "\\p{N}+";
  return kg_pretok_add_split(p, re, strlen(re), 0, 0, name);
}

int kg_pretok_add_bytelevel(kg_pretok *p, int add_prefix_space, int use_regex, const char *name) {
  step s = {NULL, 0, add_prefix_space};
  if (use_regex) KG_TRY(compile(kg_regex_gpt2, strlen(kg_regex_gpt2), 0, name, &s.re));
  KG_TRY(add_step(p, s, name));
  p->bytelevel = 1;
  return KG_OK;
}

typedef struct spans {
  kg_span *v;
  size_t n, cap;
} spans;

static int push_span(spans *a, size_t off, size_t len) {
  if (!len) return KG_OK;
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 256;
    kg_span *v = realloc(a->v, cap * sizeof *v);
    if (!v) return kg_error(KG_ERR_NOMEM, "tokenizer: out of memory for pre-tokens");
    a->v = v;
    a->cap = cap;
  }
  a->v[a->n++] = (kg_span){off, len};
  return KG_OK;
}

static int split_span(const step *st, const unsigned char *base, kg_span sp, pcre2_match_data *md,
                      pcre2_match_context *mctx, spans *out) {
  const unsigned char *s = base + sp.off;
  size_t n = sp.len, pos = 0, last = 0;
  while (pos < n) {
    int rc = pcre2_match(st->re, s, n, pos, 0, md, mctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[160];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return kg_error(KG_ERR_FORMAT, "tokenizer: pre-tokenizer regex failed: %s", (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t ms = ov[0], me = ov[1];
    if (me <= ms) {
      /* An empty match splits nothing; step over one character. */
      size_t k = ms < n ? kg_utf8_decode(s + ms, n - ms, NULL) : 1;
      pos = ms + (k ? k : 1);
      continue;
    }
    if (ms > last) KG_TRY(push_span(out, sp.off + last, ms - last));
    if (!st->removed) KG_TRY(push_span(out, sp.off + ms, me - ms));
    last = pos = me;
  }
  if (n > last) KG_TRY(push_span(out, sp.off + last, n - last));
  return KG_OK;
}

/* ByteLevel's add_prefix_space rewrites the text: a new buffer with a space
 * before each piece that does not start with one. */
static int prefix_spaces(const unsigned char *base, spans *cur, unsigned char **owned) {
  size_t extra = 0, total = 0;
  for (size_t i = 0; i < cur->n; i++) {
    extra += base[cur->v[i].off] != ' ';
    total += cur->v[i].len;
  }
  unsigned char *buf = malloc(total + extra + 1);
  if (!buf) return kg_error(KG_ERR_NOMEM, "tokenizer: out of memory");
  size_t o = 0;
  for (size_t i = 0; i < cur->n; i++) {
    size_t start = o;
    if (base[cur->v[i].off] != ' ') buf[o++] = ' ';
    memcpy(buf + o, base + cur->v[i].off, cur->v[i].len);
    o += cur->v[i].len;
    cur->v[i] = (kg_span){start, o - start};
  }
  free(*owned);
  *owned = buf;
  return KG_OK;
}

int kg_pretok_run(const kg_pretok *p, const unsigned char *text, size_t len, const unsigned char **base,
                  unsigned char **owned, kg_span **out_spans, size_t *n_spans) {
  int rc = KG_OK;
  spans cur = {0}, next = {0};
  pcre2_match_data *md = NULL;
  pcre2_match_context *mctx = NULL;
  pcre2_jit_stack *jit = NULL;
  *base = text;
  *owned = NULL;
  *out_spans = NULL;
  *n_spans = 0;
  if ((rc = push_span(&cur, 0, len)) < 0) goto done;
  if (!(md = pcre2_match_data_create(2, NULL)) || !(mctx = pcre2_match_context_create(NULL)) ||
      !(jit = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL))) {
    rc = kg_error(KG_ERR_NOMEM, "tokenizer: out of memory for the regex matcher");
    goto done;
  }
  pcre2_jit_stack_assign(mctx, NULL, jit);
  for (size_t k = 0; p && k < p->n; k++) {
    const step *st = &p->steps[k];
    if (st->add_prefix_space && cur.n) {
      if ((rc = prefix_spaces(*base, &cur, owned)) < 0) goto done;
      *base = *owned;
    }
    if (!st->re) continue;
    next.n = 0;
    for (size_t i = 0; i < cur.n; i++)
      if ((rc = split_span(st, *base, cur.v[i], md, mctx, &next)) < 0) goto done;
    spans tmp = cur;
    cur = next;
    next = tmp;
  }
  *out_spans = cur.v;
  *n_spans = cur.n;
  cur.v = NULL;
done:
  free(cur.v);
  free(next.v);
  pcre2_match_data_free(md);
  pcre2_match_context_free(mctx);
  pcre2_jit_stack_free(jit);
  if (rc < 0) {
    free(*owned);
    *owned = NULL;
  }
  return rc;
}
