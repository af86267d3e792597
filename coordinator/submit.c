/* The batch script of `kickgrid submit`: a generated head of #SBATCH options
 * and settings over the body of slurm/kickgrid.sbatch. */
#include "coordinator/submit.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/error.h"

int kg_slurm_time_seconds(const char *text, long *seconds) {
  /* Slurm's forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S. */
  long f[4] = {0, 0, 0, 0};
  int n = 0, days = 0;
  const char *p = text;
  if (!text || !*text) return kg_error(KG_ERR_ARG, "empty time limit");
  const char *dash = strchr(text, '-');
  if (dash) {
    char *end = NULL;
    errno = 0;
    long d = strtol(text, &end, 10);
    if (end != dash || d < 0 || d > 36500 || errno || !isdigit((unsigned char)text[0]))
      return kg_error(KG_ERR_ARG, "time limit '%s': expected M, M:S, H:M:S, D-H, D-H:M or D-H:M:S", text);
    days = (int)d;
    p = dash + 1;
  }
  for (;;) {
    if (!isdigit((unsigned char)*p) || n == 3)
      return kg_error(KG_ERR_ARG, "time limit '%s': expected M, M:S, H:M:S, D-H, D-H:M or D-H:M:S", text);
    char *end = NULL;
    errno = 0;
    f[n++] = strtol(p, &end, 10);
    if (errno || f[n - 1] > 1000000)
      return kg_error(KG_ERR_ARG, "time limit '%s': number out of range", text);
    p = end;
    if (*p == '\0') break;
    if (*p != ':') return kg_error(KG_ERR_ARG, "time limit '%s': expected M, M:S, H:M:S, D-H, D-H:M or D-H:M:S", text);
    p++;
  }
  long s;
  if (dash) {
    /* D-H, D-H:M, D-H:M:S */
    s = (long)days * 86400 + f[0] * 3600 + (n > 1 ? f[1] * 60 : 0) + (n > 2 ? f[2] : 0);
  } else if (n == 1) {
    s = f[0] * 60;
  } else if (n == 2) {
    s = f[0] * 60 + f[1];
  } else {
    s = f[0] * 3600 + f[1] * 60 + f[2];
  }
  *seconds = s;
  return KG_OK;
}

int kg_shell_quote(const char *s, char **out) {
  size_t n = 3;
  for (const char *p = s; *p; p++) n += *p == '\'' ? 4 : 1;
  char *q = malloc(n);
  if (!q) return kg_error(KG_ERR_NOMEM, "out of memory quoting a shell word");
  char *w = q;
  *w++ = '\'';
  for (const char *p = s; *p; p++) {
    if (*p == '\'') {
      memcpy(w, "'\\''", 4);
      w += 4;
    } else {
      *w++ = *p;
    }
  }
  *w++ = '\'';
  *w = '\0';
  *out = q;
  return KG_OK;
}

/* sbatch reads #SBATCH lines itself, without a shell: only plain characters
 * survive that unchanged. */
static int sbatch_value_ok(const char *what, const char *v, int is_path) {
  if (!v[0]) return kg_error(KG_ERR_ARG, "%s is empty", what);
  for (const char *p = v; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (isalnum(c) || strchr("_.:,@%+=-", c) || (is_path && (c == '/' || c >= 0x80))) continue;
    return kg_error(KG_ERR_ARG, "%s '%s': character '%c' cannot go on an #SBATCH line", what, v, *p);
  }
  return KG_OK;
}

static int put_quoted(FILE *f, const char *s) {
  char *q = NULL;
  KG_TRY(kg_shell_quote(s, &q));
  fputs(q, f);
  free(q);
  return KG_OK;
}

static const char *template_body(const char *text) {
  for (const char *line = text; line && *line;) {
    if (!strncmp(line, KG_SUBMIT_MARKER, strlen(KG_SUBMIT_MARKER))) return line;
    line = strchr(line, '\n');
    if (line) line++;
  }
  return NULL;
}

static int check_opts(const kg_submit_opts *o) {
  if (!o->sweep || !o->sweep[0]) return kg_error(KG_ERR_ARG, "no sweep config");
  if (!o->kickgrid || !o->kickgrid[0]) return kg_error(KG_ERR_ARG, "no kickgrid binary");
  if (o->nodes < 1) return kg_error(KG_ERR_ARG, "--nodes must be at least 1");
  if (o->gpus_per_node < 0) return kg_error(KG_ERR_ARG, "--gpus-per-node must not be negative");
  if (o->workers_per_node < 1) return kg_error(KG_ERR_ARG, "no working ranks per node");
  if (o->gpus_per_node > 0 && o->workers_per_node != o->gpus_per_node)
    return kg_error(KG_ERR_ARG, "%d working ranks per node for %d GPUs: kickgrid runs one rank per GPU",
                    o->workers_per_node, o->gpus_per_node);
  if (o->signal_lead_s < 1 || o->signal_lead_s > 65535)
    return kg_error(KG_ERR_ARG, "--signal-lead %d: Slurm takes 1 to 65535 seconds", o->signal_lead_s);
  if (!(o->drain_timeout_s >= 0) || o->drain_timeout_s >= o->signal_lead_s)
    return kg_error(KG_ERR_ARG, "drain timeout %g s must be below the signal lead (%d s), or the job ends before "
                    "kickgrid publishes its cube", o->drain_timeout_s, o->signal_lead_s);
  if (o->max_restarts < 0) return kg_error(KG_ERR_ARG, "--max-restarts must not be negative");
  if (o->time) {
    long limit = 0;
    KG_TRY(kg_slurm_time_seconds(o->time, &limit));
    if (limit <= o->signal_lead_s)
      return kg_error(KG_ERR_ARG, "time limit %s (%ld s) leaves no work time before the %d s signal lead", o->time,
                      limit, o->signal_lead_s);
  }
  const struct { const char *what, *value; int path; } vals[] = {
      {"--job-name", o->job_name, 0}, {"--time", o->time, 0},     {"--partition", o->partition, 0},
      {"--account", o->account, 0},   {"--mem", o->mem, 0},       {"Slurm log path", o->log_path, 1},
      {"working directory", o->workdir, 1}};
  for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
    if (vals[i].value) KG_TRY(sbatch_value_ok(vals[i].what, vals[i].value, vals[i].path));
  return KG_OK;
}

/* Options both the sweep job and the merge job carry. */
static void put_common_sbatch(FILE *f, const kg_submit_opts *o) {
  if (o->partition) fprintf(f, "#SBATCH --partition=%s\n", o->partition);
  if (o->account) fprintf(f, "#SBATCH --account=%s\n", o->account);
  if (o->log_path) fprintf(f, "#SBATCH --output=%s\n", o->log_path);
  if (o->workdir) fprintf(f, "#SBATCH --chdir=%s\n", o->workdir);
}

static int finish_text(FILE *f, char **buf, char **out) {
  if (fclose(f) != 0 || !*buf) {
    free(*buf);
    *buf = NULL;
    return kg_error(KG_ERR_NOMEM, "out of memory writing the batch script");
  }
  *out = *buf;
  *buf = NULL;
  return KG_OK;
}

int kg_submit_script(const kg_submit_opts *o, const char *template_text, char **out) {
  *out = NULL;
  KG_TRY(check_opts(o));
  const char *body = template_body(template_text);
  if (!body) return kg_error(KG_ERR_FORMAT, "the batch template has no line starting with '%s'", KG_SUBMIT_MARKER);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return kg_error(KG_ERR_NOMEM, "out of memory writing the batch script");
  const int ranks = o->nodes * o->workers_per_node + 1;
  int rc = KG_OK;
  fprintf(f, "#!/bin/bash\n");
  fprintf(f, "# Written by `kickgrid submit`. Submit it again with `sbatch FILE`; the part\n"
             "# below the marker line is slurm/kickgrid.sbatch (see slurm/README.md).\n");
  if (o->job_name) fprintf(f, "#SBATCH --job-name=%s\n", o->job_name);
  fprintf(f, "#SBATCH --nodes=%d\n", o->nodes);
  /* Every node gets room for its workers plus one, not a total --ntasks:
   * Slurm may spread a total unevenly, while the body launches
   * nodes*workers+1 ranks (node 0 one more) that per-node slots always fit. */
  fprintf(f, "#SBATCH --ntasks-per-node=%d\n", o->workers_per_node + 1);
  /* Per node, never per task: tasks that each see one GPU lose NCCL's
   * peer-to-peer paths; kickgrid picks the device by node-local rank. */
  if (o->gpus_per_node > 0) fprintf(f, "#SBATCH --gpus-per-node=%d\n", o->gpus_per_node);
  if (o->cpus_per_task > 0) fprintf(f, "#SBATCH --cpus-per-task=%d\n", o->cpus_per_task);
  if (o->mem) fprintf(f, "#SBATCH --mem=%s\n", o->mem);
  if (o->time) fprintf(f, "#SBATCH --time=%s\n", o->time);
  fprintf(f, "#SBATCH --requeue\n#SBATCH --open-mode=append\n#SBATCH --signal=USR1@%d\n", o->signal_lead_s);
  put_common_sbatch(f, o);
  fprintf(f, "# %d ranks: %d node(s) x %d working + the coordinator.\n", ranks, o->nodes, o->workers_per_node);
  fprintf(f, "KG_SWEEP=");
  if ((rc = put_quoted(f, o->sweep)) < 0) goto fail;
  fprintf(f, "\nKICKGRID=");
  if ((rc = put_quoted(f, o->kickgrid)) < 0) goto fail;
  fprintf(f, "\nKG_WORKERS_PER_NODE=%d\nKG_SIGNAL_LEAD=%d\nKG_DRAIN_TIMEOUT=%g\nKG_MAX_RESTARTS=%d\nKG_FRESH=%d\n",
          o->workers_per_node, o->signal_lead_s, o->drain_timeout_s, o->max_restarts, o->fresh ? 1 : 0);
  fprintf(f, "KG_SRUN_MPI=");
  if ((rc = put_quoted(f, o->srun_mpi ? o->srun_mpi : "pmix")) < 0) goto fail;
  fprintf(f, "\nKG_RUN_ARGS=(");
  for (int i = 0; i < o->n_run_args; i++) {
    if (i) fputc(' ', f);
    if ((rc = put_quoted(f, o->run_args[i])) < 0) goto fail;
  }
  fprintf(f, ")\n%s", body);
  if (body[strlen(body) - 1] != '\n') fputc('\n', f);
  return finish_text(f, &buf, out);
fail:
  fclose(f);
  free(buf);
  return rc;
}

int kg_submit_merge_script(const kg_submit_opts *o, const char *const *cubes, int n_cubes, const char *merged,
                           char **out) {
  *out = NULL;
  KG_TRY(check_opts(o));
  char *buf = NULL;
  size_t len = 0;
  int rc = KG_OK;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return kg_error(KG_ERR_NOMEM, "out of memory writing the merge script");
  fprintf(f, "#!/bin/bash\n# Written by `kickgrid submit --split`: joins the shard cubes once every shard job\n"
             "# has finished (it is submitted with --dependency=afterok on them).\n");
  if (o->job_name) fprintf(f, "#SBATCH --job-name=%s-merge\n", o->job_name);
  fprintf(f, "#SBATCH --nodes=1\n#SBATCH --ntasks=1\n#SBATCH --open-mode=append\n");
  put_common_sbatch(f, o);
  fprintf(f, "set -eu\n");
  if ((rc = put_quoted(f, o->kickgrid)) < 0) goto fail;
  fprintf(f, " merge");
  for (int i = 0; i < n_cubes; i++) {
    fputc(' ', f);
    if ((rc = put_quoted(f, cubes[i])) < 0) goto fail;
  }
  fprintf(f, " -o ");
  if ((rc = put_quoted(f, merged)) < 0) goto fail;
  fputc('\n', f);
  if ((rc = put_quoted(f, o->kickgrid)) < 0) goto fail;
  fprintf(f, " status ");
  if ((rc = put_quoted(f, merged)) < 0) goto fail;
  fputc('\n', f);
  return finish_text(f, &buf, out);
fail:
  fclose(f);
  free(buf);
  return rc;
}

const char *kg_submit_template_path(void) {
  const char *env = getenv("KG_SBATCH_TEMPLATE");
  if (env && env[0]) return env;
  return KG_SOURCE_DIR "/slurm/kickgrid.sbatch";
}

int kg_submit_read_template(const char *path, char **text) {
  *text = NULL;
  int rc = KG_OK;
  char *buf = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return kg_error(KG_ERR_IO, "%s: cannot read the batch template: %s (set KG_SBATCH_TEMPLATE or pass --template)",
                    path, strerror(errno));
  if (fseek(f, 0, SEEK_END) != 0) {
    rc = kg_error(KG_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    goto done;
  }
  long size = ftell(f);
  if (size < 0 || size > (1L << 20)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: not a batch template (size %ld)", path, size);
    goto done;
  }
  rewind(f);
  if (!(buf = malloc((size_t)size + 1))) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory reading %s", path);
    goto done;
  }
  if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
    rc = kg_error(KG_ERR_IO, "%s: short read", path);
    goto done;
  }
  buf[size] = '\0';
  if (strlen(buf) != (size_t)size || !template_body(buf)) {
    rc = kg_error(KG_ERR_FORMAT, "%s: not a batch template: no line starting with '%s'", path, KG_SUBMIT_MARKER);
    goto done;
  }
  *text = buf;
  buf = NULL;
done:
  fclose(f);
  free(buf);
  return rc;
}
