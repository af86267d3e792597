#!/usr/bin/env bash
# Evaluation of a pruned SmolLM2-135M next to the dense model (issue 4's
# table): prunes with Wanda at 50% (128 x 2048 C4 calibration), then runs the
# same task list and limits as the dense rows in docs/results.md, plus JS
# divergence from the dense model on WikiText-2 windows and task prompts.
#   METHOD / SPARSITY / PATTERN   (defaults wanda / 0.5 / none)
#   THREADS                        (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
kg=${KICKGRID:-build/kickgrid}
method=${METHOD:-wanda}
threads=${THREADS:-1}
out=bench/results
mkdir -p "$out"
name=${method}-${SPARSITY:-0.5}${PATTERN:+-${PATTERN/:/-}}
dir=$out/smollm2-$name
if [ ! -f "$dir/config.json" ]; then
  sel=(--sparsity "${SPARSITY:-0.5}")
  [ -n "${PATTERN:-}" ] && sel=(--pattern "$PATTERN")
  "$kg" prune --model smollm2 --method "$method" "${sel[@]}" --calib c4 --nsamples 128 --seqlen 2048 --seed 0 \
    --threads "$threads" --out "$dir" --json "$out/prune-$name.json" 2>&1 | tee "$out/prune-$name.log"
fi
# Task rows are compared with the dense rows already measured (same commands
# without --against); only the JS run needs the dense model alongside.
run() { local tag=$1; shift; "$kg" eval --model "$dir" --threads "$threads" --json "$out/eval-$name-$tag.json" "$@" 2>&1 | tee "$out/eval-$name-$tag.log"; }
run mc   --tasks arc_easy,arc_challenge,openbookqa,winogrande,piqa
run long --tasks boolq,hellaswag,lambada --limit 1000
run mmlu --tasks mmlu --limit 20
run mmlug --tasks mmlu --mmlu-mode generate --limit 20
run qa   --tasks freebaseqa,triviaqa --limit 1000 --batch 16
run js   --tasks js,boolq,arc_easy --limit 200 --against smollm2 --js-windows 16
