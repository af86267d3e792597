#!/usr/bin/env bash
# GPU benchmark of kickgrid's CUDA path on one GPU: perplexity pass,
# calibration forward + Hessians, SparseGPT solve, Wanda and SparseGPT prune
# end to end, the 7-task zero-shot suite, and PyTorch/transformers' bf16
# perplexity pass as the peer; each row with its floor from counted FLOPs
# and bytes against ceilings measured in the same run (bench/NOTES.md).
#
# usage: bench/gpu/bench.sh [--quick] [--sections LIST] [--models LIST]
#   --sections  comma list of: ceilings, ppl, torch, sparsegpt, wanda,
#               wanda-norecon, eval, solver (default: all). sparsegpt gives
#               the calibration, Hessian, solve and end-to-end rows from one
#               run; wanda-norecon is Wanda with --recon-samples 0, the work
#               the reference pipeline does (it measures no reconstruction
#               errors).
#   --models    comma list of: llama7b (synthetic:llama-2-7b, random bf16
#               weights made in memory), smollm2 (SmolLM2-135M; the real
#               GGUF via KG_SMOLLM2_GGUF or the data cache, else
#               synthetic:smollm2-135m) (default: both)
#   --quick     16 calibration samples instead of 128, 16 perplexity
#               windows, 50 documents per task: a minute or two per model
# Sections can be split across runs: results accumulate in
# $OUT/results.jsonl, and the table is printed from whatever is there.
# Environment: see bench/gpu/common.sh (KG_BUILD_DIR, KG_DEPS_PREFIX,
# KG_DATA_DIR, OUT); KG_BENCH_TIMEOUT caps each command (default 900 s);
# KG_BENCH_PPL_BATCH windows per forward in the perplexity pass (default 0:
# kickgrid's choice, 4096 tokens a forward on a GPU; 1 is the reference's); KG_BENCH_PRUNE_ARGS extra `kickgrid prune` arguments.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

quick=0
sections=ceilings,ppl,torch,sparsegpt,wanda,wanda-norecon,eval,solver
models=llama7b,smollm2
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --sections) sections=$2; shift ;;
    --models) models=$2; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ ",$sections," == *",$1,"* ]]; }
tmo=${KG_BENCH_TIMEOUT:-900}
if [ $quick = 1 ]; then nsamples=16; windows=16; limit=50; else nsamples=128; windows=0; limit=0; fi
results=$OUT/results.jsonl
kg_build || exit 1
K=$KG_BUILD_DIR/kickgrid

record() { echo "$1" >> "$results"; }

model_spec() {
  case $1 in
    llama7b) echo synthetic:llama-2-7b ;;
    smollm2)
      if [ -n "${KG_SMOLLM2_GGUF:-}" ] && [ -f "$KG_SMOLLM2_GGUF" ]; then echo "$KG_SMOLLM2_GGUF"
      elif "$K" inspect --model smollm2 > /dev/null 2>&1; then echo smollm2
      else echo synthetic:smollm2-135m; fi ;;
    *) echo "$1" ;;
  esac
}
torch_config() { case $1 in llama7b) echo llama-2-7b ;; smollm2) echo smollm2 ;; esac; }
floor_name() { case $1 in llama7b) echo synthetic:llama-2-7b ;; smollm2) echo smollm2 ;; *) echo "$1" ;; esac; }

# "compress time 42.9 s (forward 21.5 s, statistics 6.4 s, solve 16.2 s)"
compress_field() { sed -n 's/^compress time *\([0-9.]*\) s (forward \([0-9.]*\) s, statistics \([0-9.]*\) s, solve \([0-9.]*\) s).*/\1 \2 \3 \4/p' "$1"; }

if want ceilings; then
  kg_log "ceilings"
  if nvcc -O3 -arch=sm_90 -o "$OUT/ceilings" "$here/ceilings.cu" -lcublas -lcusolver > "$OUT/ceilings_build.log" 2>&1; then
    timeout 300 "$OUT/ceilings" > "$OUT/ceilings.txt" 2>&1; cat "$OUT/ceilings.txt"
  else
    echo "bench.sh: could not build ceilings.cu (see $OUT/ceilings_build.log)" >&2
  fi
fi

for mk in ${models//,/ }; do
  spec=$(model_spec "$mk")
  fname=$(floor_name "$mk")
  kg_log "model $mk: $spec"
  if want ppl; then
    log=$OUT/ppl_$mk.log
    kg_memwatch_start "ppl_$mk"
    timeout "$tmo" "$K" ppl --model "$spec" --backend cuda --dataset wikitext2 --seqlen 4096 --max-windows "$windows" \
      --batch "${KG_BENCH_PPL_BATCH:-0}" --json > "$log" 2>&1
    rc=$?; peak=$(kg_memwatch_stop); pw=$(kg_memwatch_power)
    line=$(grep '^{' "$log" | tail -1)
    if [ $rc = 0 ] && [ -n "$line" ]; then
      record "$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(json.dumps(dict(section='ppl', model='$fname', power='$pw', seconds=r['seconds'], windows=r['windows'], seqlen=r['seqlen'], peak_gib=$peak, note='%.0f tok/s, ppl %.3f' % (r['tokens_per_s'], r['ppl']))))" "$line")"
      ppl_windows=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['windows'])" "$line")
    else echo "ppl $mk failed (rc $rc): $(tail -2 "$log")" >&2; fi
  fi
  if want torch; then
    log=$OUT/torch_$mk.log
    w=${ppl_windows:-$([ $quick = 1 ] && echo 16 || echo 83)}
    kg_memwatch_start "torch_$mk"
    timeout "$tmo" python3 "$here/torch_ppl.py" --config "$(torch_config "$mk")" --seqlen 4096 --windows "$w" > "$log" 2>&1
    rc=$?; peak=$(kg_memwatch_stop); pw=$(kg_memwatch_power)
    line=$(grep '^{' "$log" | tail -1)
    if [ $rc = 0 ] && [ -n "$line" ]; then
      record "$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(json.dumps(dict(section='torch_ppl', model='$fname', power='$pw', seconds=r['seconds'], windows=r['windows'], seqlen=r['seqlen'], peak_gib=r['peak_device_gib'], note='%.0f tok/s, torch max_allocated %.2f GiB, torch %s' % (r['tokens_per_s'], r['peak_allocated_gib'], r['torch']))))" "$line")"
    else echo "torch $mk failed (rc $rc): $(tail -3 "$log")" >&2; fi
  fi
  for row in sparsegpt wanda wanda-norecon; do
    want $row || continue
    method=${row%-norecon}; extra=(); [ $row != $method ] && extra=(--recon-samples 0)
    log=$OUT/${row}_$mk.log
    kg_memwatch_start "${row}_$mk"
    timeout "$tmo" "$K" prune --model "$spec" --backend cuda --method $method --sparsity 0.5 --calib c4 \
      --nsamples $nsamples --seqlen 2048 "${extra[@]}" ${KG_BENCH_PRUNE_ARGS:-} > "$log" 2>&1
    rc=$?; peak=$(kg_memwatch_stop); pw=$(kg_memwatch_power)
    read -r total fwd stats solve <<< "$(compress_field "$log")"
    if [ $rc != 0 ] || [ -z "${total:-}" ]; then echo "$row $mk failed (rc $rc): $(tail -2 "$log")" >&2; continue; fi
    wall=$(sed -n 's/^wall time *\([0-9.]*\) s.*/\1/p' "$log")
    common="model='$fname', nsamples=$nsamples, seqlen=2048, peak_gib=$peak, power='$pw'"
    if [ $method = sparsegpt ]; then
      record "$(python3 -c "import json; print(json.dumps(dict(section='calib', seconds=$fwd, $common, note='statistics included')))")"
      record "$(python3 -c "import json; print(json.dumps(dict(section='hessians', seconds=$stats, $common, note='GPU time of the statistics kernels')))")"
      record "$(python3 -c "import json; print(json.dumps(dict(section='solve', seconds=$solve, $common, note='incl. weight transfers and recon errors')))")"
    fi
    record "$(python3 -c "import json; print(json.dumps(dict(section='$row', seconds=$total, $common, note='process wall %s s incl. model load' % '$wall')))")"
  done
  if want eval; then
    log=$OUT/eval_$mk.log
    lim=(); [ $limit -gt 0 ] && lim=(--limit $limit)
    kg_memwatch_start "eval_$mk"
    t0=$(date +%s.%N)
    timeout "$tmo" "$K" eval --model "$spec" --backend cuda --tasks boolq,piqa,hellaswag,winogrande,arc_easy,arc_challenge,openbookqa \
      "${lim[@]}" --json "$OUT/eval_$mk.json" > "$log" 2>&1
    rc=$?; t1=$(date +%s.%N); peak=$(kg_memwatch_stop); pw=$(kg_memwatch_power)
    if [ $rc = 0 ]; then
      tok=$(python3 "$here/eval_tokens.py" "$KG_DATA_DIR" --limit $limit 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['tokens'])" 2>/dev/null || echo 0)
      secs=$(python3 -c "import json; d=json.load(open('$OUT/eval_$mk.json')); print(sum(t.get('seconds', 0) for t in d['tasks'].values()))" 2>/dev/null || echo 0)
      record "$(python3 -c "import json; print(json.dumps(dict(section='eval', model='$fname', power='$pw', seconds=$secs, tokens=$tok, peak_gib=$peak, note='task time; process wall %.1f s; %s' % ($t1 - $t0, '${lim[*]}' or 'full'))))")"
    else echo "eval $mk failed (rc $rc): $(tail -2 "$log")" >&2; fi
  fi
done

if want solver && [ -x "$KG_BUILD_DIR/tests/test_cuda_compress" ]; then
  kg_log "device solver microbenchmark"
  timeout 600 "$KG_BUILD_DIR/tests/bench_cuda_compress" > "$OUT/solver.log" 2>&1
  grep -E "^BENCH|checks failed" "$OUT/solver.log"
fi

echo
echo "== kickgrid GPU benchmark ($([ $quick = 1 ] && echo quick || echo full)), logs in $OUT"
if [ -s "$results" ]; then
  python3 "$here/floors.py" --ceilings "$OUT/ceilings.txt" --results "$results"
fi
