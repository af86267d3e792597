"""Floors for the GPU benchmark rows and the table bench.sh prints.

The counting model (FLOPs and bytes per phase) is written out in
bench/NOTES.md; this file is its executable form. A floor is the roofline
time max(flops / compute ceiling, bytes / bandwidth ceiling) of the work the
reference pipeline does for the row, with ceilings measured in the same run
(bench/gpu/ceilings.cu): bf16/fp16 GEMM for the tensor-core work, plain fp32
SGEMM for the float32 solver, device copy bandwidth for memory traffic, and
pinned host<->device rates for weights that must cross PCIe.

usage: floors.py --ceilings FILE --results FILE [--table]
  results: JSON lines written by bench.sh, one per measured row."""
import argparse
import json
import math
import sys

MODELS = {
    # dim, hidden, layers, heads, kv heads, head dim, vocab, tied embeddings
    "synthetic:llama-2-7b": dict(dim=4096, hidden=11008, L=32, heads=32, kv=32, hd=128, vocab=32000, tied=False),
    "smollm2": dict(dim=576, hidden=1536, L=30, heads=9, kv=3, hd=64, vocab=49152, tied=True),
}


def model_of(name):
    for k, v in MODELS.items():
        if name == k or name.startswith(k) or k.split(":")[-1] in name:
            return v
    return MODELS["smollm2"] if "smol" in name.lower() else None


def linears(m):
    """(rows, cols) of a block's seven linears, and the four distinct inputs' widths."""
    d, h, q, kv = m["dim"], m["hidden"], m["heads"] * m["hd"], m["kv"] * m["hd"]
    lin = [(q, d), (kv, d), (kv, d), (d, q), (h, d), (h, d), (d, h)]
    return lin, [d, q, d, h]


def block_params(m):
    return sum(r * c for r, c in linears(m)[0])


def forward_flops(m, tokens_per_seq, seqs, with_down=True, head=False):
    """Matmul FLOPs of `seqs` sequences through every block (2 per
    multiply-add); causal attention counts the lower triangle only."""
    lin = linears(m)[0]
    per_tok = sum(2 * r * c for r, c in (lin if with_down else lin[:-1]))
    attn = 2 * m["heads"] * m["hd"] * tokens_per_seq * tokens_per_seq  # QK^T + PV, causal half
    f = seqs * m["L"] * (per_tok * tokens_per_seq + attn)
    if head:
        f += seqs * 2 * tokens_per_seq * m["vocab"] * m["dim"]
    return f


def floor_row(row, m, c):
    """(floor seconds, what bounds it) for a measured row."""
    s, T, n = row["section"], row.get("seqlen", 2048), row.get("nsamples", 128)
    bf16 = c["gemm_bf16_8192"] * 1e12
    fp16 = c.get("gemm_fp16_8192", c["gemm_bf16_8192"]) * 1e12
    fp32 = c["gemm_fp32_8192"] * 1e12
    hbm = c["copy_d2d"] * 1e9
    pcie = min(c.get("h2d_pinned", 25.0), c.get("d2h_pinned", 25.0)) * 1e9
    P = m["L"] * block_params(m)
    emb = m["vocab"] * m["dim"] * (1 if m["tied"] else 2)
    lin, widths = linears(m)
    if s in ("ppl", "torch_ppl"):
        W = row["windows"]
        fl = forward_flops(m, T, W, head=True)
        by = W * 2 * (P + emb)  # bf16 weights read once per window
        return max(fl / bf16, by / hbm), "bf16 GEMM"
    fwd = forward_flops(m, T, n, with_down=False) + forward_flops(m, T, n)  # statistics pass stops before down
    gram = n * m["L"] * sum(2 * T * d * d for d in widths)  # full X^T X as the reference computes it
    act_bytes = n * m["L"] * sum(T * d * 4 * 2 for d in widths)  # fp32 hook inputs read for stats
    if s == "calib":
        return max(fwd / bf16 + gram / fp16, act_bytes / hbm), "bf16/fp16 GEMM"
    if s == "hessians":
        return max(gram / fp16, act_bytes / hbm), "fp16 GEMM"
    sweep = m["L"] * sum(r * c * c for r, c in lin)  # lazy updates: rows * n^2 per linear
    factor = m["L"] * sum(2 * d ** 3 / 3 for d in widths)  # potrf + trtri per input (shared by its linears)
    pcie_bytes = m["L"] * 2 * 4 * block_params(m)  # fp32 W up and down per linear
    if s == "solve":
        return max((sweep + factor) / fp32, pcie_bytes / pcie), "fp32 SGEMM / PCIe"
    sync_bytes = m["L"] * 4 * block_params(m)  # fp32 masters re-uploaded (kg_model_sync)
    if s == "sparsegpt":
        t = fwd / bf16 + gram / fp16 + max((sweep + factor) / fp32, (pcie_bytes + sync_bytes) / pcie)
        return t, "forward + Gram + solve"
    if s in ("wanda", "wanda-norecon"):
        mask_pcie = m["L"] * (4 * block_params(m) + block_params(m) / 8) + sync_bytes
        return fwd / bf16 + max(act_bytes / 2 / hbm, mask_pcie / pcie), "forward + PCIe"
    if s == "eval":
        tok = row.get("tokens")
        if not tok:
            return float("nan"), "token count unknown"
        return 2 * (P + emb / (1 if m["tied"] else 2)) * tok / bf16, "bf16 GEMM"
    return float("nan"), ""


def read_ceilings(path):
    c = {}
    try:
        lines = open(path).readlines()
    except OSError:
        return c
    for line in lines:
        p = line.split()
        if len(p) >= 3 and p[0] == "ceiling":
            c[p[1]] = float(p[2])
    return c


LABELS = {
    "ppl": "ppl pass (WikiText-2, seqlen {seqlen})",
    "torch_ppl": "  peer: PyTorch LlamaForCausalLM bf16",
    "calib": "calibration forward + Hessians ({nsamples} x {seqlen})",
    "hessians": "  of which Hessians (device time)",
    "solve": "SparseGPT solve (7 linears x {L} blocks)",
    "wanda": "Wanda prune end to end",
    "wanda-norecon": "  without recon errors (as the reference)",
    "sparsegpt": "SparseGPT prune end to end",
    "eval": "7-task zero-shot suite",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ceilings", required=True)
    ap.add_argument("--results", required=True)
    a = ap.parse_args()
    c = read_ceilings(a.ceilings)
    rows = [json.loads(l) for l in open(a.results) if l.strip()]
    if not c:
        print("no ceilings measured: floors omitted", file=sys.stderr)
    # The short ceilings last milliseconds; a pass lasts seconds, long enough
    # for the board's power limit to lower the clocks. The sustained bf16
    # GEMM scales every tensor-core ceiling for a second floor.
    cs = None
    if c.get("gemm_bf16_8192_sustained") and c.get("gemm_bf16_8192"):
        k = c["gemm_bf16_8192_sustained"] / c["gemm_bf16_8192"]
        cs = dict(c)
        for name in ("gemm_bf16_8192", "gemm_fp16_8192", "gemm_tf32_8192"):
            if name in cs:
                cs[name] *= k
    print(f"{'model':<22} {'row':<46} {'measured s':>10} {'floor s':>8} {'ratio':>6} {'sust. floor':>11} {'ratio':>6} "
          f"{'peak GiB':>9}  note")
    for r in rows:
        m = model_of(r["model"])
        fl, why = floor_row(r, m, c) if (m and c) else (float("nan"), "")
        label = LABELS.get(r["section"], r["section"]).format(L=m["L"] if m else "?", **{"seqlen": r.get("seqlen", ""),
                                                                                        "nsamples": r.get("nsamples", "")})
        sec = r.get("seconds", float("nan"))
        ratio = sec / fl if fl and not math.isnan(fl) and fl > 0 else float("nan")
        peak = r.get("peak_gib", float("nan"))
        note = r.get("note", "")
        if why:
            note = f"{why}; {note}" if note else why
        if r.get("power"):
            note = f"{note}; board {r['power']}" if note else f"board {r['power']}"
        fs = floor_row(r, m, cs)[0] if (m and cs) else float("nan")
        ratio_s = sec / fs if fs and not math.isnan(fs) and fs > 0 else float("nan")
        print(f"{r['model'][:22]:<22} {label[:46]:<46} {sec:>10.2f} {fl:>8.2f} {ratio:>6.2f} {fs:>11.2f} {ratio_s:>6.2f} "
              f"{peak:>9.2f}  {note}")
    if c:
        print("ceilings: " + ", ".join(f"{k} {v:g}" for k, v in sorted(c.items())))


if __name__ == "__main__":
    main()
