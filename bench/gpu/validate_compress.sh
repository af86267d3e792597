#!/usr/bin/env bash
# Validates the CUDA compression engine on a GPU machine: builds with
# -DKG_CUDA=ON (see common.sh for KG_BUILD_DIR / KG_DEPS_PREFIX / KG_DATA_DIR
# / OUT), then runs
#   unit.test_cuda_compress        device kernels vs the host functions
#                                  (statistics, NCCL team of one, masks,
#                                  SparseGPT/GPTQ, recon errors)
#   py.test_cuda_compress_e2e      the pipeline vs a float64 oracle (CPU),
#                                  CUDA engine vs host engine, CUDA vs CPU
#                                  backend perplexity (stories260K; SmolLM2
#                                  when KG_SMOLLM2_GGUF names its GGUF)
#   py.test_prune_*                the host solvers are unchanged
# and prints a PASS/FAIL summary last. Logs go to $OUT.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
kg_build || { echo "FAIL build"; exit 1; }
declare -a summary
status=0
step() {  # step NAME COMMAND...
  local name=$1; shift
  kg_log "$name"
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  if [ $rc = 0 ]; then summary+=("PASS $name"); elif [ $rc = 77 ]; then summary+=("SKIP $name");
  else summary+=("FAIL $name (rc $rc, $OUT/$name.log)"); status=1; fi
  grep -E "^(PASS|FAIL|SKIP|BENCH)|passed|failed" "$OUT/$name.log" | tail -40
}
step unit_test_cuda_compress "$KG_BUILD_DIR/tests/test_cuda_compress"
pytest_env=(env KICKGRID="$KG_BUILD_DIR/kickgrid" KG_BUILD_DIR="$KG_BUILD_DIR" KG_HAVE_CUDA=ON KG_DATA_DIR="$KG_DATA_DIR"
            PYTHONDONTWRITEBYTECODE=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
step py_test_cuda_compress_e2e bash -c "cd '$kg_root/tests/py' && ${pytest_env[*]} python3 -m pytest -q -s -p no:cacheprovider test_cuda_compress_e2e.py"
step py_test_prune bash -c "cd '$kg_root/tests/py' && ${pytest_env[*]} python3 -m pytest -q -p no:cacheprovider test_prune_masks.py test_prune_wanda.py test_prune_sparsegpt.py test_prune_quant.py test_prune_stats.py test_prune_owl.py"
echo
echo "== validate_compress summary (logs in $OUT)"
printf '%s\n' "${summary[@]}"
[ $status = 0 ] && echo "PASS" || echo "FAIL"
exit $status
