#!/usr/bin/env bash
# The SmolLM2-135M pruning/quantization quality table (issue 3's full setting)
# on the CPU: 128 x 2048 C4 calibration samples, WikiText-2 perplexity at
# seqlen 2048, for dense, magnitude, Wanda, SparseGPT, OWL-Wanda (50%, 2:4,
# 4:8) and 4-bit RTN/GPTQ. Prints one line per run and writes
# bench/results/quality_cpu.tsv. Hours on a 2-core machine: run it in the
# background (nice) and record the table in docs/results.md.
#   KICKGRID   the binary (default build/kickgrid)
#   NSAMPLES / SEQLEN / PPL_SEQLEN   override the setting (defaults 128/2048/2048)
set -euo pipefail
cd "$(dirname "$0")/.."
kg=${KICKGRID:-build/kickgrid}
ns=${NSAMPLES:-128}
sl=${SEQLEN:-2048}
pl=${PPL_SEQLEN:-2048}
model=${MODEL:-smollm2}
out=bench/results
mkdir -p "$out"
tsv=$out/quality_cpu.tsv
[ -f "$tsv" ] || printf "method\tpattern\tppl\tcompress_s\twall_s\tpeak_mib\n" > "$tsv"

one() {
  local method=$1 pattern=$2; shift 2
  if grep -q "^$method	$pattern	" "$tsv"; then echo "skip $method $pattern (done)"; return; fi
  local log=$out/quality_${method}_${pattern//:/-}.log
  local start=$(date +%s.%N)
  /usr/bin/time -v "$kg" "$@" > "$log" 2>&1 || { echo "FAILED: $method $pattern (see $log)"; return; }
  local end=$(date +%s.%N)
  local ppl=$(grep -oP '^perplexity +\K[0-9.]+' "$log" | tail -1)
  local comp=$(grep -oP '^compress time +\K[0-9.]+' "$log" || echo 0)
  local rss=$(grep -oP 'Maximum resident set size \(kbytes\): \K[0-9]+' "$log")
  printf "%s\t%s\t%s\t%s\t%.1f\t%d\n" "$method" "$pattern" "$ppl" "${comp:-0}" "$(echo "$end - $start" | bc)" $((rss / 1024)) >> "$tsv"
  echo "$method $pattern: ppl $ppl"
}

common=(--model "$model" --calib c4 --nsamples "$ns" --seqlen "$sl" --seed 0 --ppl wikitext2 --ppl-seqlen "$pl")
one dense - ppl --model "$model" --dataset wikitext2 --seqlen "$pl"
for m in magnitude wanda sparsegpt owl-wanda; do
  one "$m" 0.5 prune "${common[@]}" --method "$m" --sparsity 0.5
done
for p in 2:4 4:8; do
  for m in magnitude wanda sparsegpt; do
    one "$m" "$p" prune "${common[@]}" --method "$m" --pattern "$p"
  done
done
one rtn w4 prune "${common[@]}" --method rtn --bits 4
one gptq w4 prune "${common[@]}" --method gptq --bits 4
column -t -s$'\t' "$tsv"
