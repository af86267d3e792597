#!/usr/bin/env bash
# Fails when a source file includes a header from a layer above its own.
# Order: io -> model -> {compress, evaluate} -> worker -> coordinator -> cli.
set -u
root=${1:-$(dirname "$0")/..}
cd "$root" || exit 2
rank() {
  case $1 in
    io) echo 0 ;; model) echo 1 ;; compress|evaluate) echo 2 ;;
    worker) echo 3 ;; coordinator) echo 4 ;; cli) echo 5 ;; *) echo -1 ;;
  esac
}
bad=0
for layer in io model compress evaluate worker coordinator cli; do
  [ -d "$layer" ] || continue
  mine=$(rank "$layer")
  while IFS=: read -r file line inc; do
    dep=$(printf '%s' "$inc" | sed -E 's/.*#include "([a-z_]+)\/.*/\1/')
    theirs=$(rank "$dep")
    [ "$theirs" -lt 0 ] && continue
    if [ "$theirs" -gt "$mine" ] || { [ "$theirs" -eq "$mine" ] && [ "$dep" != "$layer" ]; }; then
      echo "$file:$line: layer '$layer' must not include '$dep' ($inc)"
      bad=1
    fi
  done < <(grep -rn --include='*.c' --include='*.h' --include='*.cu' --include='*.cuh' '#include "[a-z_]*/' "$layer")
done
[ $bad -eq 0 ] && echo "layering: ok"
exit $bad
