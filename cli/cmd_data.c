/* kickgrid data: list, verify and fetch the files of the data manifest. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "io/error.h"
#include "io/manifest.h"
#include "io/paths.h"

static void print_help(FILE *out) {
  fprintf(out,
          "usage: kickgrid data list   [--only PATTERNS]\n"
          "       kickgrid data verify [--only PATTERNS]\n"
          "       kickgrid data fetch  [--only PATTERNS] [--mirror URL] [--quiet]\n\n"
          "Datasets, tokenizers and models are listed in the data manifest with their\n"
          "size, SHA-256 and upstream URLs. 'verify' checks the files on this machine,\n"
          "'fetch' downloads the missing or damaged ones (each is checked before it is\n"
          "moved into place). Optional entries (models) are fetched only when named:\n"
          "  kickgrid data fetch --only smollm2\n\n"
          "options:\n"
          "  --only PATTERNS   comma-separated names, paths, directories or globs\n"
          "                    (e.g. 'c4-*', 'tasks/mmlu', 'stories260K')\n"
          "  --mirror URL      get https://HOST/PATH from URL/HOST/PATH instead (also file://);\n"
          "                    default $KG_DATA_MIRROR\n"
          "  --data-dir DIR    data directory (default $KG_DATA_DIR, else ../shared/data)\n"
          "  --manifest FILE   manifest (default $KG_MANIFEST, else configs/data-manifest.json)\n"
          "  --quiet           no download progress lines\n\n"
          "Exit status: 0 when every selected file is ok afterwards, 1 otherwise, 2 on usage errors.\n"
          "See docs/data.md.\n");
}

typedef struct report_state {
  int name_width;
} report_state;

static void report_line(const kg_data_entry *e, kg_data_state state, const char *detail, void *user) {
  const report_state *rs = user;
  printf("%-*s  %-8s  %s\n", rs->name_width, e->name, kg_data_state_name(state),
         detail && detail[0] ? detail : e->path);
  fflush(stdout);
}

static int name_width(const kg_manifest *m, const char *only) {
  int w = 4;
  for (size_t i = 0; i < m->n_entries; i++)
    if (!only || kg_data_entry_matches(&m->entries[i], only)) {
      int n = (int)strlen(m->entries[i].name);
      if (n > w) w = n;
    }
  return w;
}

static int list_entries(const kg_manifest *m, const char *only) {
  int w = name_width(m, only);
  size_t shown = 0;
  printf("%-*s  %-5s  %12s  %-7s  %s\n", w, "NAME", "WHERE", "BYTES", "PRESENT", "PATH");
  for (size_t i = 0; i < m->n_entries; i++) {
    const kg_data_entry *e = &m->entries[i];
    if (only && !kg_data_entry_matches(e, only)) continue;
    char path[4096];
    int present = kg_data_entry_file(e, path, sizeof(path)) == KG_OK && kg_path_exists(path);
    printf("%-*s  %-5s  %12lld  %-7s  %s%s\n", w, e->name, e->location == KG_DATA_IN_CACHE ? "cache" : "data",
           (long long)e->size, present ? "yes" : "no", path, e->optional ? "  (optional)" : "");
    shown++;
  }
  printf("%zu entries; data directory %s; cache %s\n", shown, kg_data_dir(), kg_cache_dir());
  if (only && !shown) {
    kg_error(KG_ERR_ARG, "no entry of %s matches '%s'", m->path, only);
    return kg_cli_fail("data");
  }
  return 0;
}

int kg_cmd_data(int argc, char **argv) {
  static const struct option options[] = {
      {"only", required_argument, NULL, 'o'},     {"mirror", required_argument, NULL, 'm'},
      {"data-dir", required_argument, NULL, 'd'}, {"manifest", required_argument, NULL, 'f'},
      {"quiet", no_argument, NULL, 'q'},          {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *only = NULL, *mirror = NULL, *manifest_path = NULL;
  int quiet = 0, c;
  kg_manifest *m = NULL;
  int status = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
    switch (c) {
    case 'o': only = optarg; break;
    case 'm': mirror = optarg; break;
    case 'd': kg_paths_set_data_dir(optarg); break;
    case 'f': manifest_path = optarg; break;
    case 'q': quiet = 1; break;
    case 'h': print_help(stdout); return 0;
    default: return kg_cli_usage_error("data", "unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc) return kg_cli_usage_error("data", "expected a subcommand: list, verify or fetch");
  const char *sub = argv[optind];
  if (optind + 1 < argc) return kg_cli_usage_error("data", "unexpected argument '%s'", argv[optind + 1]);
  int is_list = !strcmp(sub, "list"), is_verify = !strcmp(sub, "verify"), is_fetch = !strcmp(sub, "fetch");
  if (!is_list && !is_verify && !is_fetch)
    return kg_cli_usage_error("data", "unknown subcommand '%s' (list, verify or fetch)", sub);
  if (mirror && !is_fetch) return kg_cli_usage_error("data", "--mirror only applies to 'fetch'");
  if (kg_manifest_load(manifest_path, &m) < 0) return kg_cli_fail("data");
  if (is_list) {
    status = list_entries(m, only);
    goto done;
  }
  report_state rs = {name_width(m, only)};
  kg_data_options opt = {only, mirror, quiet, report_line, &rs};
  kg_data_summary sum = {0};
  int rc = is_fetch ? kg_data_fetch(m, &opt, &sum) : kg_data_verify(m, &opt, &sum);
  printf("%s: %zu ok, %zu fetched, %zu missing, %zu mismatching, %zu failed, %zu optional not present "
         "(data directory %s)\n",
         sub, sum.ok, sum.fetched, sum.missing, sum.mismatched, sum.failed, sum.skipped, kg_data_dir());
  if (rc < 0) status = kg_cli_fail("data");
done:
  kg_manifest_free(m);
  return status;
}
