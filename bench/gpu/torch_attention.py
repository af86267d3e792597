"""Peer timings for kickgrid's attention kernels: PyTorch's scaled_dot_product_attention
(causal, bf16) at one shape, through each backend PyTorch offers on the device
(FlashAttention-2, memory-efficient, cuDNN), timed with CUDA events after warm-ups.
Prints one line per backend in the format of bench_cuda_attention's BENCH lines.

    python3 bench/gpu/torch_attention.py [--T 4096] [--heads 32] [--kv-heads 32] [--head-dim 128]
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=None)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    kvh = args.kv_heads or args.heads
    torch.manual_seed(0)
    dev = torch.device("cuda")
    q = torch.randn(1, args.heads, args.T, args.head_dim, device=dev, dtype=torch.bfloat16)
    k = torch.randn(1, kvh, args.T, args.head_dim, device=dev, dtype=torch.bfloat16)
    v = torch.randn(1, kvh, args.T, args.head_dim, device=dev, dtype=torch.bfloat16)
    if kvh != args.heads:  # not every backend takes GQA: repeat the shared heads
        k = k.repeat_interleave(args.heads // kvh, dim=1)
        v = v.repeat_interleave(args.heads // kvh, dim=1)
    gflop = 2.0 * 2.0 * (args.T * args.T / 2) * args.heads * args.head_dim / 1e9
    ref = None
    for name, backend in [("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION),
                          ("cudnn", SDPBackend.CUDNN_ATTENTION)]:
        try:
            with sdpa_kernel([backend]):
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                for _ in range(3):
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(args.reps):
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)
                end.record()
                torch.cuda.synchronize()
        except RuntimeError as e:
            print(f"BENCH torch sdpa {name:9s} unavailable: {str(e).splitlines()[0][:120]}")
            continue
        ms = start.elapsed_time(end) / args.reps
        if ref is None:
            ref = out.float()
        rel = ((out.float() - ref).norm() / ref.norm()).item()
        print(f"BENCH torch sdpa {name:9s} T={args.T} heads={args.heads}/{kvh} d={args.head_dim}  {ms:8.3f} ms  "
              f"{gflop / ms:6.0f} TFLOP/s  rel. to first {rel:.2e}  (torch {torch.__version__})")


if __name__ == "__main__":
    main()
