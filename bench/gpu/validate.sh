#!/bin/bash
# Builds kickgrid with the CUDA backend and runs every CUDA check in one go,
# for a GPU node that may lack the -dev packages (see docs/cuda.md).
#
#   KG_DEPS_PREFIX=/path/to/prefix bench/gpu/validate.sh
#
# KG_DEPS_PREFIX  a directory holding usr/include and usr/lib/x86_64-linux-gnu
#                 of extracted Debian packages (cJSON, libconfig, PCRE2, HDF5,
#                 OpenBLAS-OpenMP, ...); optional when the system has them.
# OUT             where logs go (default ./validate-out); the summary is last.
# KG_DATA_DIR     the data directory (default ../shared/data beside the checkout)
# KG_BUILD_DIR    build directory (default build-cuda-validate)
# KG_VALIDATE_PERF=0  skip the 7B-shaped throughput run (needs ~30 GiB host
#                 memory, ~2 minutes)
# KG_CMAKE_ARGS   extra configure arguments
# KG_VALIDATE_ONLY=configure  stop after configuring (checks the dependencies)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/validate-out}
BUILD=${KG_BUILD_DIR:-$ROOT/build-cuda-validate}
JOBS=${KG_JOBS:-16}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
n_pass=0
n_fail=0
step=""

record() { # record PASS|FAIL|SKIP name detail
  printf '%-4s %-34s %s\n' "$1" "$2" "${3:-}" | tee -a "$SUMMARY"
  case $1 in PASS) n_pass=$((n_pass + 1)) ;; FAIL) n_fail=$((n_fail + 1)) ;; esac
}

on_error() {
  echo "validate.sh: step '$step' failed (exit $1); logs in $OUT" >&2
  record FAIL "$step" "(script error, see $OUT)"
  summary
  exit 1
}
trap 'on_error $?' ERR

summary() {
  echo
  echo "==== summary ($OUT) ===="
  cat "$SUMMARY"
  echo "validate: $n_pass passed, $n_fail failed"
}

# ---- environment ----
step="environment"
if command -v nvidia-smi > /dev/null; then nvidia-smi -L | tee "$OUT/gpu.txt"; else echo "no nvidia-smi" | tee "$OUT/gpu.txt"; fi
ARCH=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
CMAKE_EXTRA=()
if [ -n "${KG_DEPS_PREFIX:-}" ]; then
  P=$(cd "$KG_DEPS_PREFIX" && pwd)
  [ -d "$P/usr/include" ] || { echo "KG_DEPS_PREFIX=$P has no usr/include" >&2; exit 2; }
  # Debian .pc files say prefix=/usr: rewrite copies so they point into the prefix.
  PCDIR=$BUILD-pkgconfig
  rm -rf "$PCDIR"
  mkdir -p "$PCDIR"
  for d in "$P/usr/lib/$ARCH/pkgconfig" "$P/usr/lib/$ARCH/openblas-openmp/pkgconfig" "$P/usr/share/pkgconfig" \
           "$P/usr/lib/pkgconfig"; do
    [ -d "$d" ] || continue
    for pc in "$d"/*.pc; do
      [ -e "$pc" ] || continue
      sed -E "s#^([A-Za-z_]+)=/usr#\\1=$P/usr#; s#-I/usr/#-I$P/usr/#g; s#-L/usr/#-L$P/usr/#g" "$pc" > "$PCDIR/$(basename "$pc")"
    done
  done
  export PKG_CONFIG_PATH="$PCDIR:$P/usr/lib/$ARCH/pkgconfig:$P/usr/lib/$ARCH/openblas-openmp/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export CMAKE_PREFIX_PATH="$P/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$P/usr/lib/$ARCH:$P/usr/lib/$ARCH/openblas-openmp:$P/usr/lib/$ARCH/hdf5/serial${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export KG_DEPS_PREFIX=$P
  if ! command -v pkg-config > /dev/null && [ -x "$P/usr/bin/pkg-config" ]; then export PATH="$P/usr/bin:$PATH"; fi
  CMAKE_EXTRA+=(-DKG_DEPS_PREFIX="$P" -DHDF5_ROOT="$P/usr/lib/$ARCH/hdf5/serial" -DHDF5_PREFER_PARALLEL=OFF)
fi
# NCCL and cuBLAS may live in the Python packages of the CUDA image.
for d in /usr/local/cuda/lib64 /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib; do
  if [ -d "$d" ]; then LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"; fi
done
export LD_LIBRARY_PATH
export KG_DATA_DIR=${KG_DATA_DIR:-$(cd "$ROOT/.." && pwd)/shared/data}
echo "KG_DATA_DIR=$KG_DATA_DIR" | tee "$OUT/env.txt"
env | grep -E '^(PKG_CONFIG_PATH|CMAKE_PREFIX_PATH|LD_LIBRARY_PATH|KG_)' >> "$OUT/env.txt" || true

# ---- configure and build ----
step="configure"
# shellcheck disable=SC2086
if cmake -S "$ROOT" -B "$BUILD" -DKG_CUDA=ON -DCMAKE_BUILD_TYPE=Release "${CMAKE_EXTRA[@]}" ${KG_CMAKE_ARGS:-} \
     > "$OUT/configure.log" 2>&1; then
  record PASS configure
else
  tail -30 "$OUT/configure.log"
  record FAIL configure "see configure.log"
  summary
  exit 1
fi
if [ "${KG_VALIDATE_ONLY:-}" = configure ]; then
  grep -E "kickgrid:|Found" "$OUT/configure.log" || true
  trap - ERR
  summary
  exit 0
fi
step="build"
if cmake --build "$BUILD" -j "$JOBS" > "$OUT/build.log" 2>&1; then
  record PASS build
else
  grep -E "error|Error" "$OUT/build.log" | head -30
  record FAIL build "see build.log"
  summary
  exit 1
fi

# ---- GPU tests: each prints PASS/FAIL lines; exit 77 means skipped ----
run_test() { # run_test name timeout [env...]
  local name=$1 limit=$2
  shift 2
  step=$name
  local rc=0
  env "$@" timeout "$limit" "$BUILD/tests/$name" > "$OUT/$name.log" 2>&1 || rc=$?
  local counts
  counts=$(grep -E "^$name: [0-9]+ passed" "$OUT/$name.log" | tail -1 || true)
  grep -E "^(FAIL|PERF)" "$OUT/$name.log" | head -40 || true
  if [ $rc -eq 0 ]; then record PASS "$name" "$counts"
  elif [ $rc -eq 77 ]; then record SKIP "$name" "$(grep -m1 SKIP "$OUT/$name.log" || true)"
  else record FAIL "$name" "exit $rc; $counts"
  fi
}

run_test test_cuda_kernels 600
run_test test_cuda_forward 900
# the device-side compression engine's tests (compress/cuda), when built
if [ -x "$BUILD/tests/test_cuda_compress" ]; then run_test test_cuda_compress 900; fi
if [ "${KG_VALIDATE_PERF:-1}" != 0 ]; then
  run_test test_cuda_perf 900 KG_CUDA_PERF=1 KG_CUDA_PERF_STREAM_GB="${KG_CUDA_PERF_STREAM_GB:-8}"
fi

# ---- end to end: kickgrid ppl on both backends ----
step="kickgrid ppl"
MODEL="$KG_DATA_DIR/models/stories260K/stories260K.bin"
if [ -f "$MODEL" ]; then
  for be in cpu cuda; do
    "$BUILD/kickgrid" ppl --model "$MODEL" --dataset tinystories --seqlen 256 --max-windows 16 --backend $be --json \
      > "$OUT/ppl_$be.json" 2> "$OUT/ppl_$be.log" || true
  done
  ppl_of() { sed -n 's/.*"ppl": \([0-9.eE+-]*\).*/\1/p' "$1"; }
  pc=$(ppl_of "$OUT/ppl_cpu.json")
  pg=$(ppl_of "$OUT/ppl_cuda.json")
  if [ -n "$pc" ] && [ -n "$pg" ] && awk -v a="$pc" -v b="$pg" 'BEGIN { d = b / a - 1; exit !(d < 0.01 && d > -0.01) }'; then
    record PASS "kickgrid ppl --backend cuda" "cpu $pc cuda $pg (within 1%)"
  else
    record FAIL "kickgrid ppl --backend cuda" "cpu '${pc}' cuda '${pg}' (see ppl_*.log)"
  fi
else
  record SKIP "kickgrid ppl --backend cuda" "$MODEL missing"
fi

trap - ERR
summary
[ $n_fail -eq 0 ]
