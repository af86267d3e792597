"""The peer for kickgrid's perplexity pass: the same pass through PyTorch /
transformers LlamaForCausalLM in bf16 on the same GPU, as the SparseGPT and
Wanda reference code runs it (one window per forward, use_cache off, logits
shifted and scored with CrossEntropyLoss in fp32). Weights are random with
the model's configuration: only the speed and memory are compared.

Prints one JSON line: seconds, tokens_per_s, windows, peak memory as PyTorch
counts it (max_memory_allocated) and as the device reports it (used memory
polled from another thread, which includes the CUDA context)."""
import argparse
import json
import threading
import time

import torch

CONFIGS = {
    "llama-2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32000, rms_norm_eps=1e-5, rope_theta=10000.0,
                       tie_word_embeddings=False),
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, rms_norm_eps=1e-5, rope_theta=100000.0,
                    tie_word_embeddings=True),
}


class DevicePeak(threading.Thread):
    """Samples cudaMemGetInfo every 50 ms: the device's used memory."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = 0, False

    def run(self):
        while not self.stop:
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=sorted(CONFIGS), default="llama-2-7b")
    ap.add_argument("--seqlen", type=int, default=4096)
    ap.add_argument("--windows", type=int, default=83)
    ap.add_argument("--attn", default="sdpa")
    a = ap.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(max_position_embeddings=max(4096, a.seqlen), **CONFIGS[a.config])
    cfg._attn_implementation = a.attn
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    model.eval()
    torch.set_default_dtype(torch.float32)
    tokens = torch.randint(0, cfg.vocab_size, (a.windows, a.seqlen), device="cuda")
    loss_fn = torch.nn.CrossEntropyLoss()
    watch = DevicePeak()
    watch.start()
    with torch.no_grad():
        for w in range(min(2, a.windows)):  # warm-up (kernel selection, allocator)
            model(tokens[w:w + 1], use_cache=False)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        nll = 0.0
        for w in range(a.windows):
            logits = model(tokens[w:w + 1], use_cache=False).logits
            shift = logits[:, :-1, :].float()
            nll += loss_fn(shift.reshape(-1, shift.size(-1)), tokens[w:w + 1, 1:].reshape(-1)).item() * a.seqlen
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    watch.stop = True
    watch.join()
    print(json.dumps(dict(config=a.config, seqlen=a.seqlen, windows=a.windows, seconds=seconds,
                          tokens_per_s=a.windows * a.seqlen / seconds,
                          ppl=float(torch.exp(torch.tensor(nll / (a.windows * a.seqlen)))),
                          peak_allocated_gib=torch.cuda.max_memory_allocated() / 2**30,
                          peak_device_gib=watch.peak / 2**30, torch=torch.__version__)))


if __name__ == "__main__":
    main()
