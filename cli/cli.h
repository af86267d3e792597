/* Commands of the kickgrid CLI. Each lives in cli/cmd_<name>.c and returns a
 * process exit status (0 ok, 1 failure, 2 usage error). */
#ifndef KG_CLI_CLI_H
#define KG_CLI_CLI_H

#include <stdio.h>

typedef int (*kg_command_fn)(int argc, char **argv);

/* Prints the error recorded by kg_error() as "kickgrid <cmd>: message". */
int kg_cli_fail(const char *command);
/* True when argv holds -h or --help. */
int kg_cli_wants_help(int argc, char **argv);
/* Prints a usage error and returns 2. */
int kg_cli_usage_error(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a positive integer / float option value; prints a usage error on failure. */
int kg_cli_parse_int(const char *command, const char *opt, const char *value, long long min, long long max, long long *out);
int kg_cli_parse_double(const char *command, const char *opt, const char *value, double *out);

#endif
