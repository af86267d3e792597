/* kickgrid submit: write (and submit) a Slurm batch job that runs a sweep and
 * requeues itself until the grid is finished. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "coordinator/submit.h"
#include "io/error.h"
#include "io/paths.h"
#include "io/sweep_config.h"

extern char **environ;

static const char usage[] =
    "usage: kickgrid submit SWEEP.cfg --nodes N --gpus-per-node G [options] [-- RUN-OPTIONS]\n"
    "       kickgrid submit SWEEP.cfg --gpus-per-node 0 --ntasks-per-node K [options]\n\n"
    "Validates the sweep, writes a Slurm batch script that runs it with\n"
    "`srun --mpi=pmix kickgrid run SWEEP --resume` (one rank per GPU plus the\n"
    "coordinator) and submits it with sbatch, printing the job id. The job asks\n"
    "for USR1 a lead time before its limit; kickgrid then drains and exits 75,\n"
    "and the script requeues the job, which resumes from the journal.\n\n"
    "options:\n"
    "  --nodes N            nodes (default 1)\n"
    "  --gpus-per-node G    GPUs per node, one working rank each; 0 for CPU ranks\n"
    "  --ntasks-per-node K  CPU-only: working ranks per node (with --gpus-per-node 0)\n"
    "  --time T             time limit (Slurm format: M, H:M:S, D-H:M, ...)\n"
    "  --partition P, --account A, --mem M, --cpus-per-task C   passed to #SBATCH\n"
    "  --signal-lead S      USR1 S seconds before the limit (default 300)\n"
    "  --drain-timeout S    kickgrid's wait for running cells after it (default 4/5 of the lead)\n"
    "  --max-restarts R     stop requeueing after R restarts (default 20)\n"
    "  --job-name X         job name (default: the sweep's name)\n"
    "  --output-dir D       scripts, shard configs and Slurm logs (default: the cube's directory/slurm)\n"
    "  --split K            K jobs, each running a shard of the models into its own cube,\n"
    "                       and a job that merges the shard cubes into grid.output\n"
    "  --fresh              the first start discards earlier results of the cube\n"
    "  --template FILE      body of the script (default slurm/kickgrid.sbatch, or $KG_SBATCH_TEMPLATE)\n"
    "  --mpi PLUGIN         srun --mpi plugin (default pmix)\n"
    "  --dry-run            write and print the script(s) without submitting\n"
    "  -- RUN-OPTIONS       passed on to `kickgrid run` (e.g. --publish-every 30)\n\n"
    "Resubmitting the same sweep continues its cube (the job always runs --resume).\n"
    "slurm/README.md explains requeueing, the signal lead and splitting.\n";

typedef struct submit_args {
  kg_submit_opts job;
  const char *config, *output_dir, *template_path;
  int split, dry_run, have_gpus, ntasks_per_node;
} submit_args;

static int parse_args(int argc, char **argv, submit_args *a) {
  enum { O_NODES = 256, O_GPUS, O_TPN, O_TIME, O_PART, O_ACCT, O_MEM, O_CPT, O_LEAD, O_DRAIN, O_RESTARTS,
         O_NAME, O_OUTDIR, O_SPLIT, O_FRESH, O_TEMPLATE, O_MPI, O_DRY };
  static const struct option opts[] = {
      {"nodes", required_argument, NULL, O_NODES},        {"gpus-per-node", required_argument, NULL, O_GPUS},
      {"ntasks-per-node", required_argument, NULL, O_TPN}, {"time", required_argument, NULL, O_TIME},
      {"partition", required_argument, NULL, O_PART},     {"account", required_argument, NULL, O_ACCT},
      {"mem", required_argument, NULL, O_MEM},            {"cpus-per-task", required_argument, NULL, O_CPT},
      {"signal-lead", required_argument, NULL, O_LEAD},   {"drain-timeout", required_argument, NULL, O_DRAIN},
      {"max-restarts", required_argument, NULL, O_RESTARTS}, {"job-name", required_argument, NULL, O_NAME},
      {"output-dir", required_argument, NULL, O_OUTDIR},  {"split", required_argument, NULL, O_SPLIT},
      {"fresh", no_argument, NULL, O_FRESH},              {"template", required_argument, NULL, O_TEMPLATE},
      {"mpi", required_argument, NULL, O_MPI},            {"dry-run", no_argument, NULL, O_DRY},
      {"help", no_argument, NULL, 'h'},                   {0, 0, 0, 0}};
  long long v = 0;
  double drain = -1;
  int c;
  /* Words after "--" belong to kickgrid run; getopt only sees those before. */
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--")) {
      a->job.run_args = (const char *const *)(argv + i + 1);
      a->job.n_run_args = argc - i - 1;
      argc = i;
      break;
    }
  a->job.nodes = 1;
  a->job.signal_lead_s = 300;
  a->job.max_restarts = 20;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'h': fputs(usage, stdout); return 1;
    case O_NODES: if (kg_cli_parse_int("submit", "--nodes", optarg, 1, 100000, &v)) return 2; a->job.nodes = (int)v; break;
    case O_GPUS:
      if (kg_cli_parse_int("submit", "--gpus-per-node", optarg, 0, 1024, &v)) return 2;
      a->job.gpus_per_node = (int)v;
      a->have_gpus = 1;
      break;
    case O_TPN: if (kg_cli_parse_int("submit", "--ntasks-per-node", optarg, 1, 4096, &v)) return 2; a->ntasks_per_node = (int)v; break;
    case O_TIME: a->job.time = optarg; break;
    case O_PART: a->job.partition = optarg; break;
    case O_ACCT: a->job.account = optarg; break;
    case O_MEM: a->job.mem = optarg; break;
    case O_CPT: if (kg_cli_parse_int("submit", "--cpus-per-task", optarg, 1, 4096, &v)) return 2; a->job.cpus_per_task = (int)v; break;
    case O_LEAD: if (kg_cli_parse_int("submit", "--signal-lead", optarg, 1, 65535, &v)) return 2; a->job.signal_lead_s = (int)v; break;
    case O_DRAIN: if (kg_cli_parse_double("submit", "--drain-timeout", optarg, &drain)) return 2; break;
    case O_RESTARTS: if (kg_cli_parse_int("submit", "--max-restarts", optarg, 0, 100000, &v)) return 2; a->job.max_restarts = (int)v; break;
    case O_NAME: a->job.job_name = optarg; break;
    case O_OUTDIR: a->output_dir = optarg; break;
    case O_SPLIT: if (kg_cli_parse_int("submit", "--split", optarg, 1, 100000, &v)) return 2; a->split = (int)v; break;
    case O_FRESH: a->job.fresh = 1; break;
    case O_TEMPLATE: a->template_path = optarg; break;
    case O_MPI: a->job.srun_mpi = optarg; break;
    case O_DRY: a->dry_run = 1; break;
    default: return kg_cli_usage_error("submit", "unknown option");
    }
  }
  if (optind >= argc) return kg_cli_usage_error("submit", "a sweep config is required");
  if (optind + 1 < argc) return kg_cli_usage_error("submit", "unexpected argument '%s' (options for kickgrid run go after --)", argv[optind + 1]);
  a->config = argv[optind];
  if (a->config[0] == '-') return kg_cli_usage_error("submit", "unknown option %s", a->config);
  if (!a->have_gpus && !a->ntasks_per_node)
    return kg_cli_usage_error("submit", "--gpus-per-node is required (0 with --ntasks-per-node for CPU ranks)");
  if (a->job.gpus_per_node > 0 && a->ntasks_per_node)
    return kg_cli_usage_error("submit", "--ntasks-per-node is for CPU-only jobs: with GPUs kickgrid runs one rank per GPU");
  if (a->job.gpus_per_node == 0 && !a->ntasks_per_node)
    return kg_cli_usage_error("submit", "a CPU-only job (--gpus-per-node 0) needs --ntasks-per-node");
  a->job.workers_per_node = a->job.gpus_per_node > 0 ? a->job.gpus_per_node : a->ntasks_per_node;
  a->job.drain_timeout_s = drain >= 0 ? drain : (double)(a->job.signal_lead_s * 4 / 5);
  return 0;
}

/* The sweep must run on the ranks the job starts: teams live on one node. */
static int check_sweep(const kg_sweep *sw, const submit_args *a, kg_diag_list *diags) {
  const int w = a->job.workers_per_node, team = sw->grid.team_size > 0 ? sw->grid.team_size : 1;
  KG_TRY(kg_sweep_check_world(sw, a->job.nodes * w, diags));
  if (team > w)
    return kg_error(KG_ERR_ARG, "%s: a team of %d ranks must fit on one node, which has %d working ranks", sw->path,
                    team, w);
  if (w % team)
    fprintf(stderr, "kickgrid submit: warning: %d working ranks per node leave %d idle in teams of %d\n", w, w % team,
            team);
  if (sw->grid.backend == KG_BACKEND_CUDA && a->job.gpus_per_node == 0)
    return kg_error(KG_ERR_ARG, "%s: grid.backend is cuda but the job asks for no GPUs", sw->path);
  if (sw->grid.backend == KG_BACKEND_CPU && a->job.gpus_per_node > 0)
    fprintf(stderr, "kickgrid submit: warning: grid.backend is cpu; the %d GPUs per node stay unused\n",
            a->job.gpus_per_node);
  return KG_OK;
}

static char *absolute(const char *path) {
  if (path[0] == '/') return strdup(path);
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return NULL;
  size_t n = strlen(cwd) + strlen(path) + 2;
  char *out = malloc(n);
  if (out) snprintf(out, n, "%s/%s", cwd, path);
  return out;
}

static int write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return kg_error(KG_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
  int bad = fputs(text, f) < 0;
  if (fclose(f) != 0 || bad) return kg_error(KG_ERR_IO, "%s: write failed", path);
  return KG_OK;
}

/* Runs `sbatch --parsable [--dependency=DEP] SCRIPT` and returns the job id. */
static int run_sbatch(const char *script, const char *dependency, char *job_id, size_t cap) {
  int fds[2];
  if (pipe(fds) != 0) return kg_error(KG_ERR_IO, "pipe: %s", strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  char dep[4200];
  char *args[5];
  int n = 0;
  args[n++] = "sbatch";
  args[n++] = "--parsable";
  if (dependency) {
    snprintf(dep, sizeof dep, "--dependency=afterok:%s", dependency);
    args[n++] = dep;
  }
  args[n++] = (char *)script;
  args[n] = NULL;
  pid_t pid;
  int err = posix_spawnp(&pid, "sbatch", &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (err) {
    close(fds[0]);
    return kg_error(KG_ERR_NOT_FOUND, "cannot run sbatch: %s (is Slurm installed? --dry-run only writes %s)",
                    strerror(err), script);
  }
  char out[256] = {0};
  size_t got = 0;
  ssize_t r;
  while ((r = read(fds[0], out + got, sizeof(out) - 1 - got)) > 0 || (r < 0 && errno == EINTR))
    if (r > 0) got += (size_t)r;
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return kg_error(KG_ERR_IO, "sbatch %s failed (exit %d); its message is above", script,
                    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  /* --parsable prints "ID" or "ID;CLUSTER". */
  size_t k = 0;
  while (k < got && out[k] >= '0' && out[k] <= '9' && k + 1 < cap) {
    job_id[k] = out[k];
    k++;
  }
  job_id[k] = '\0';
  if (!k) return kg_error(KG_ERR_FORMAT, "sbatch printed no job id for %s: '%s'", script, out);
  return KG_OK;
}

/* "out/tiny.h5" -> "out/tiny.shard1of2.h5" */
static void shard_name(const char *path, const char *tag, char *out, size_t cap) {
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  if (dot && (!slash || dot > slash + 1)) snprintf(out, cap, "%.*s.%s%s", (int)(dot - path), path, tag, dot);
  else snprintf(out, cap, "%s.%s", path, tag);
}

typedef struct job_file {
  char path[PATH_MAX];
  char *text;
} job_file;

static int emit(const submit_args *a, job_file *jobs, int n_jobs) {
  for (int i = 0; i < n_jobs; i++) {
    KG_TRY(write_file(jobs[i].path, jobs[i].text));
    if (a->dry_run) {
      if (n_jobs > 1) printf("# ==> %s <==\n", jobs[i].path);
      fputs(jobs[i].text, stdout);
    } else {
      fprintf(stderr, "kickgrid submit: wrote %s\n", jobs[i].path);
    }
  }
  if (a->dry_run) {
    fprintf(stderr, "kickgrid submit: dry run: wrote %d script%s, submitted nothing\n", n_jobs, n_jobs == 1 ? "" : "s");
    return KG_OK;
  }
  /* The last of several is the merge job, which waits for the others. */
  char deps[4096] = "";
  for (int i = 0; i < n_jobs; i++) {
    char id[64];
    const int is_merge = n_jobs > 1 && i == n_jobs - 1;
    KG_TRY(run_sbatch(jobs[i].path, is_merge ? deps : NULL, id, sizeof id));
    if (!is_merge) {
      size_t len = strlen(deps);
      snprintf(deps + len, sizeof(deps) - len, "%s%s", len ? ":" : "", id);
    }
    printf("%s%s\n", id, is_merge ? " (merge)" : "");
  }
  return KG_OK;
}

static int build_jobs(submit_args *a, const kg_sweep *sw, const char *template_text, const char *dir) {
  int rc = KG_OK, n_jobs = a->split > 1 ? a->split + 1 : 1;
  job_file *jobs = calloc((size_t)n_jobs, sizeof(*jobs));
  int *shard_of = calloc(sw->n_models, sizeof(int));
  char **cubes = calloc((size_t)n_jobs, sizeof(char *));
  char log_path[PATH_MAX + 32];
  const char *name = a->job.job_name;
  if (!jobs || !shard_of || !cubes) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto done;
  }
  snprintf(log_path, sizeof log_path, "%s/%%x-%%j.out", dir);
  a->job.log_path = log_path;
  if (n_jobs == 1) {
    snprintf(jobs[0].path, sizeof jobs[0].path, "%s/%s.sbatch", dir, name);
    if ((rc = kg_submit_script(&a->job, template_text, &jobs[0].text)) < 0) goto done;
  } else {
    if ((rc = kg_submit_shard_models(sw, a->split, shard_of)) < 0) goto done;
    for (int s = 0; s < a->split && rc >= 0; s++) {
      char tag[64], cfg[PATH_MAX], cube[PATH_MAX], logs[PATH_MAX], job_name[256];
      snprintf(tag, sizeof tag, "shard%dof%d", s + 1, a->split);
      snprintf(cfg, sizeof cfg, "%s/%s.%s.cfg", dir, sw->name, tag);
      shard_name(sw->grid.output, tag, cube, sizeof cube);
      snprintf(logs, sizeof logs, "%s/%s", sw->grid.log_dir, tag);
      if ((rc = kg_submit_write_shard(a->config, sw, shard_of, s, cfg, cube, logs)) < 0) break;
      if (!(cubes[s] = strdup(cube))) {
        rc = kg_error(KG_ERR_NOMEM, "out of memory");
        break;
      }
      snprintf(job_name, sizeof job_name, "%s-%dof%d", name, s + 1, a->split);
      kg_submit_opts o = a->job;
      o.sweep = cfg;
      o.job_name = job_name;
      snprintf(jobs[s].path, sizeof jobs[s].path, "%s/%s.%s.sbatch", dir, name, tag);
      rc = kg_submit_script(&o, template_text, &jobs[s].text);
    }
    if (rc < 0) goto done;
    snprintf(jobs[a->split].path, sizeof jobs[a->split].path, "%s/%s.merge.sbatch", dir, name);
    if ((rc = kg_submit_merge_script(&a->job, (const char *const *)cubes, a->split, sw->grid.output,
                                     &jobs[a->split].text)) < 0)
      goto done;
    fprintf(stderr, "kickgrid submit: %zu models in %d shards:", sw->n_models, a->split);
    for (size_t m = 0; m < sw->n_models; m++) fprintf(stderr, " %s->%d", sw->models[m].name, shard_of[m] + 1);
    fprintf(stderr, "\n");
  }
  rc = emit(a, jobs, n_jobs);
done:
  for (int i = 0; jobs && i < n_jobs; i++) free(jobs[i].text);
  for (int i = 0; cubes && i < n_jobs; i++) free(cubes[i]);
  free(jobs);
  free(cubes);
  free(shard_of);
  return rc;
}

int kg_cmd_submit(int argc, char **argv) {
  submit_args a = {0};
  kg_sweep *sw = NULL;
  char *config_abs = NULL, *dir = NULL, *workdir = NULL, *template_text = NULL;
  char exe[PATH_MAX];
  int prc = parse_args(argc, argv, &a), rc = KG_OK;
  if (prc) return prc == 1 ? 0 : prc;
  kg_diag_list diags;
  kg_diag_list_init(&diags);
  rc = kg_sweep_load(a.config, &sw, &diags);
  if (rc >= 0) rc = check_sweep(sw, &a, &diags);
  kg_diag_list_print(&diags, stderr);
  kg_diag_list_free(&diags);
  if (rc < 0) goto done;
  if (!a.job.job_name) a.job.job_name = sw->name;
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) {
    rc = kg_error(KG_ERR_IO, "cannot find the kickgrid binary (/proc/self/exe): %s", strerror(errno));
    goto done;
  }
  exe[n] = '\0';
  a.job.kickgrid = exe;
  if ((rc = kg_submit_read_template(a.template_path ? a.template_path : kg_submit_template_path(), &template_text)) < 0)
    goto done;
  if (!(config_abs = absolute(a.config)) || !(workdir = getcwd(NULL, 0))) {
    rc = kg_error(KG_ERR_NOMEM, "cannot resolve %s or the working directory", a.config);
    goto done;
  }
  a.job.sweep = config_abs;
  a.job.workdir = workdir;
  if (a.output_dir) {
    dir = absolute(a.output_dir);
  } else {
    char d[PATH_MAX];
    snprintf(d, sizeof d, "%s", sw->grid.output);
    char *slash = strrchr(d, '/');
    if (slash) snprintf(slash, sizeof(d) - (size_t)(slash - d), "/slurm");
    else snprintf(d, sizeof d, "slurm");
    dir = absolute(d);
  }
  if (!dir) {
    rc = kg_error(KG_ERR_NOMEM, "out of memory");
    goto done;
  }
  if ((rc = kg_mkdir_p(dir)) < 0) goto done;
  rc = build_jobs(&a, sw, template_text, dir);
done:
  if (rc < 0) kg_cli_fail("submit");
  kg_sweep_free(sw);
  free(config_abs);
  free(dir);
  free(workdir);
  free(template_text);
  return rc < 0 ? 1 : 0;
}
