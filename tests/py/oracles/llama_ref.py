"""Independent float64 NumPy reference forward passes for the LLaMA family.

Written from the architecture definitions, not from kickgrid's C code, so the
C model can be checked against it:
  * llama2.c legacy .bin files, with run.c's math (RMSNorm eps 1e-5,
    interleaved-pair RoPE with theta 1e4, GQA, SwiGLU w1=gate/w3=up/w2=down);
  * GGUF llama files (read with the `gguf` package), with ggml's conventions:
    q/k rows stay in the converter's permuted order and RoPE rotates adjacent
    pairs (llama.cpp's "normal" rope mode for LLM_ARCH_LLAMA);
  * Hugging Face directories (config.json + safetensors parsed here), with
    LlamaForCausalLM's math (rotate_half RoPE, "llama3"/"linear" rope scaling,
    GQA, tied embeddings) or, for OpenLM/DCLM checkpoints, OpenLM's math
    (gain-only LayerNorm, qk-norm over the whole projection, fused in_proj and
    w12, xformers-style rotate-half rotary with theta 1e4).

Everything is float64 from the stored (dequantized/rounded) weights onward.
Public API:
  load(path) -> RefModel                   (format detected like kickgrid does)
  load_llama2c(path), load_gguf(path), load_hf(dir)
  RefModel.logits(tokens, cache=None) -> float64 [T, vocab]
  RefModel.new_cache(); RefModel.greedy(prompt_tokens, steps, stop_token=None)
  Llama2cTokenizer(path): encode(text, bos=True), decode(prev, token), render
  run_c_generate(model, tokenizer, prompt, steps): what run.c -t 0 prints
  read_safetensors(path) -> {name: float64 array}, rope_inv_freq(...)
"""
import json
import math
import os
import struct
from pathlib import Path

import numpy as np


# --------------------------------------------------------------------------
# Model container and forward pass

class RefConfig:
    def __init__(self, **kw):
        self.dim = kw["dim"]
        self.hidden_dim = kw["hidden_dim"]
        self.n_layers = kw["n_layers"]
        self.n_heads = kw["n_heads"]
        self.n_kv_heads = kw["n_kv_heads"]
        self.head_dim = kw.get("head_dim") or self.dim // self.n_heads
        self.vocab_size = kw["vocab_size"]
        self.norm_eps = float(kw.get("norm_eps", 1e-5))
        self.norm = kw.get("norm", "rms")                 # "rms" | "layer_gain"
        self.rope_style = kw.get("rope_style", "half")    # "half" | "interleaved"
        self.inv_freq = np.asarray(kw["inv_freq"], dtype=np.float64)
        self.qk_norm = bool(kw.get("qk_norm", False))
        if self.n_heads % self.n_kv_heads:
            raise ValueError("n_heads must be a multiple of n_kv_heads")
        if self.inv_freq.shape != (self.head_dim // 2,):
            raise ValueError("inv_freq must have head_dim/2 entries")

    def __repr__(self):
        keys = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "vocab_size",
                "norm_eps", "norm", "rope_style", "qk_norm")
        return "RefConfig(" + ", ".join(f"{k}={getattr(self, k)}" for k in keys) + ")"


def _f64(w):
    """Weights may be stored lazily (a zero-argument callable) to keep the
    float64 copy of a quantized model from living in memory all at once."""
    if callable(w):
        w = w()
    return np.asarray(w, dtype=np.float64)


class RefModel:
    """Weights use PyTorch's [out_features, in_features] layout. Per layer:
    attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down, and for qk-norm
    models q_norm, k_norm."""

    def __init__(self, cfg, embed, layers, final_norm, lm_head):
        self.cfg = cfg
        self.embed = embed
        self.layers = layers
        self.final_norm = final_norm
        self.lm_head = lm_head

    def _norm(self, x, gain):
        eps = self.cfg.norm_eps
        if self.cfg.norm == "rms":
            return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gain
        if self.cfg.norm == "layer_gain":
            mu = np.mean(x, axis=-1, keepdims=True)
            var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
            return (x - mu) / np.sqrt(var + eps) * gain
        raise ValueError(f"unknown norm {self.cfg.norm}")

    def _rope(self, x, positions):
        """x: [T, heads, head_dim], rotated in place of a copy."""
        ang = positions[:, None].astype(np.float64) * self.cfg.inv_freq[None, :]  # [T, hd/2]
        cos = np.cos(ang)[:, None, :]
        sin = np.sin(ang)[:, None, :]
        out = np.empty_like(x)
        if self.cfg.rope_style == "interleaved":
            a, b = x[..., 0::2], x[..., 1::2]
            out[..., 0::2] = a * cos - b * sin
            out[..., 1::2] = a * sin + b * cos
        elif self.cfg.rope_style == "half":
            h = x.shape[-1] // 2
            a, b = x[..., :h], x[..., h:]
            out[..., :h] = a * cos - b * sin
            out[..., h:] = b * cos + a * sin
        else:
            raise ValueError(f"unknown rope style {self.cfg.rope_style}")
        return out

    def hidden(self, tokens, cache=None):
        """Final hidden states (after the last norm), float64 [T, dim], of
        tokens at positions len(cache)..; cache (a list from new_cache) keeps
        each layer's rotated keys and values and grows by T."""
        c = self.cfg
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 1 or tokens.size == 0:
            raise ValueError("tokens must be a non-empty 1-D sequence")
        if tokens.min() < 0 or tokens.max() >= c.vocab_size:
            raise ValueError("token id outside the vocabulary")
        if cache is None:
            cache = self.new_cache()
        T = tokens.size
        pos0 = cache[0][0].shape[0]
        emb = self.embed
        x = np.asarray(emb()[tokens] if callable(emb) else emb[tokens], dtype=np.float64)
        pos = pos0 + np.arange(T)
        causal = np.arange(pos0 + T)[None, :] > pos[:, None]  # [T, pos0+T]
        group = c.n_heads // c.n_kv_heads
        scale = 1.0 / math.sqrt(c.head_dim)
        for L, kv in zip(self.layers, cache):
            h = self._norm(x, _f64(L["attn_norm"]))
            q = h @ _f64(L["wq"]).T
            k = h @ _f64(L["wk"]).T
            v = h @ _f64(L["wv"]).T
            if c.qk_norm:
                q = self._norm(q, _f64(L["q_norm"]))
                k = self._norm(k, _f64(L["k_norm"]))
            q = self._rope(q.reshape(T, c.n_heads, c.head_dim), pos)
            k = self._rope(k.reshape(T, c.n_kv_heads, c.head_dim), pos)
            kv[0] = np.concatenate([kv[0], k])
            kv[1] = np.concatenate([kv[1], v.reshape(T, c.n_kv_heads, c.head_dim)])
            # query head i reads key/value head i // group
            kk = np.repeat(kv[0], group, axis=1)
            vv = np.repeat(kv[1], group, axis=1)
            s = np.einsum("thd,shd->hts", q, kk) * scale
            s[:, causal] = -np.inf
            s -= s.max(axis=-1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=-1, keepdims=True)
            att = np.einsum("hts,shd->thd", p, vv).reshape(T, c.n_heads * c.head_dim)
            x = x + att @ _f64(L["wo"]).T
            h = self._norm(x, _f64(L["ffn_norm"]))
            g = h @ _f64(L["w_gate"]).T
            u = h @ _f64(L["w_up"]).T
            x = x + (g / (1.0 + np.exp(-g)) * u) @ _f64(L["w_down"]).T
        return self._norm(x, _f64(self.final_norm))

    def new_cache(self):
        c = self.cfg
        empty = np.zeros((0, c.n_kv_heads, c.head_dim))
        return [[empty, empty] for _ in self.layers]

    def logits(self, tokens, cache=None):
        """float64 [T, vocab]; without a cache, one causal sequence at
        positions 0..T-1."""
        return self.hidden(tokens, cache) @ _f64(self.lm_head).T

    def greedy(self, prompt_tokens, steps, stop_token=None):
        """Greedy loop: the sequence (prompt included) grows to at most
        `steps` tokens; generation stops early when argmax == stop_token
        (not appended). Returns the whole sequence."""
        seq = [int(t) for t in prompt_tokens]
        cache = self.new_cache()
        fresh = seq
        while len(seq) < steps:
            nxt = int(np.argmax(self.logits(fresh, cache)[-1]))
            if stop_token is not None and nxt == stop_token:
                break
            seq.append(nxt)
            fresh = [nxt]
        return seq


# --------------------------------------------------------------------------
# RoPE frequencies

def rope_inv_freq(head_dim, theta, scaling=None):
    """inv_freq[j] = theta^(-2j/head_dim), then optional scaling:
    {"rope_type": "linear", "factor"} divides by factor; {"rope_type": "llama3",
    "factor", "low_freq_factor", "high_freq_factor",
    "original_max_position_embeddings"} applies LLaMA-3.1's wavelength bands
    (as in HF's _compute_llama3_parameters)."""
    j = np.arange(0, head_dim, 2, dtype=np.float64)
    inv = 1.0 / (float(theta) ** (j / head_dim))
    if not scaling:
        return inv
    kind = scaling.get("rope_type", scaling.get("type"))
    factor = float(scaling.get("factor", 1.0))
    if kind in (None, "default"):
        return inv
    if kind == "linear":
        return inv / factor
    if kind == "llama3":
        lo = float(scaling["low_freq_factor"])
        hi = float(scaling["high_freq_factor"])
        old = float(scaling["original_max_position_embeddings"])
        wavelen = 2.0 * math.pi / inv
        long_wl = old / lo    # longer wavelengths than this are slowed by factor
        short_wl = old / hi   # shorter ones are kept
        out = np.where(wavelen > long_wl, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        blended = (1.0 - smooth) * inv / factor + smooth * inv
        mid = (wavelen >= short_wl) & (wavelen <= long_wl)
        return np.where(mid, blended, out)
    raise ValueError(f"unsupported rope scaling {kind!r}")


# --------------------------------------------------------------------------
# llama2.c

def load_llama2c(path):
    """Legacy llama2.c checkpoint: 7 int32 (dim, hidden_dim, n_layers,
    n_heads, n_kv_heads, vocab_size, seq_len; negative vocab = separate
    classifier) then fp32 tensors in run.c's order, with the unused
    freq_cis_real/imag tables (seq_len * head_size / 2 each) before wcls."""
    raw = Path(path).read_bytes()
    if len(raw) < 28:
        raise ValueError(f"{path}: too short for a llama2.c header")
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    hs = dim // n_heads
    kv_dim = n_kv * hs
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        if off + n > data.size:
            raise ValueError(f"{path}: file ends inside the weights")
        a = data[off:off + n].reshape(shape)
        off += n
        return a

    emb = take(vocab, dim)
    rms_att = take(n_layers, dim)
    wq = take(n_layers, n_heads * hs, dim)
    wk = take(n_layers, kv_dim, dim)
    wv = take(n_layers, kv_dim, dim)
    wo = take(n_layers, dim, n_heads * hs)
    rms_ffn = take(n_layers, dim)
    w1 = take(n_layers, hidden, dim)
    w2 = take(n_layers, dim, hidden)
    w3 = take(n_layers, hidden, dim)
    rms_final = take(dim)
    take(seq_len * hs // 2)
    take(seq_len * hs // 2)
    wcls = emb if shared else take(vocab, dim)
    layers = [dict(attn_norm=rms_att[l], wq=wq[l], wk=wk[l], wv=wv[l], wo=wo[l], ffn_norm=rms_ffn[l],
                   w_gate=w1[l], w_up=w3[l], w_down=w2[l]) for l in range(n_layers)]
    # run.c: freq = 1 / 10000^((i % head_size) / head_size) for even i
    cfg = RefConfig(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv,
                    head_dim=hs, vocab_size=vocab, norm_eps=1e-5, norm="rms", rope_style="interleaved",
                    inv_freq=rope_inv_freq(hs, 10000.0))
    return RefModel(cfg, emb.astype(np.float64), layers, rms_final, wcls)


class Llama2cTokenizer:
    """llama2.c's tokenizer.bin (int32 max_token_length; per token float32
    score, int32 length, bytes) with run.c's encode/decode rules."""

    def __init__(self, path):
        raw = Path(path).read_bytes()
        self.pieces, self.scores = [], []
        off = 4
        while off < len(raw):
            score, n = struct.unpack_from("<fi", raw, off)
            off += 8
            self.pieces.append(raw[off:off + n])
            self.scores.append(score)
            off += n
        self.index = {}
        for i, p in enumerate(self.pieces):
            self.index.setdefault(p, i)

    def encode(self, text, bos=True, eos=False):
        data = text.encode("utf-8")
        ids = [1] if bos else []
        if data:
            ids.append(self.index[b" "])  # SentencePiece's dummy prefix
        i = 0
        while i < len(data):
            n = 1
            while i + n < len(data) and (data[i + n] & 0xC0) == 0x80 and n < 4:
                n += 1
            ch = data[i:i + n]
            if ch in self.index:
                ids.append(self.index[ch])
            else:
                ids.extend(b + 3 for b in ch)  # byte fallback: ids 3..258
            i += n
        while True:
            best, best_i, best_id = -1e10, -1, -1
            for j in range(len(ids) - 1):
                m = self.index.get(self.pieces[ids[j]] + self.pieces[ids[j + 1]])
                if m is not None and self.scores[m] > best:
                    best, best_i, best_id = self.scores[m], j, m
            if best_i < 0:
                break
            ids[best_i:best_i + 2] = [best_id]
        if eos:
            ids.append(2)
        return ids

    def decode(self, prev, token):
        p = self.pieces[token]
        if prev == 1 and p.startswith(b" "):
            p = p[1:]
        if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
            try:
                return bytes([int(p[3:5], 16)])
            except ValueError:
                pass
        return p

    def render(self, tokens):
        """What run.c prints for a token sequence starting with BOS (one
        piece per step, non-printable single bytes dropped), without the
        final newline."""
        out = b""
        for prev, tok in zip(tokens, tokens[1:]):
            p = self.decode(prev, tok)
            if len(p) == 1 and not (32 <= p[0] < 127 or p[0] in b"\t\n\v\f\r"):
                continue
            out += p
        return out.decode("utf-8", "replace")


def run_c_generate(model, tok, prompt, steps):
    """Greedy generation as `run -t 0 -i PROMPT -n STEPS` prints it."""
    ids = tok.encode(prompt, bos=True)
    # run.c forwards positions 0..steps-1 and prints the token after each,
    # so the sequence (BOS included) grows to steps + 1 tokens
    seq = model.greedy(ids, steps + 1, stop_token=1)
    return tok.render(seq)


# --------------------------------------------------------------------------
# GGUF (llama architecture)

def _gguf_value(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def load_gguf(path):
    """A GGUF llama file read with the `gguf` package; every tensor is
    dequantized with gguf.quants.dequantize when it is used."""
    import gguf
    from gguf.quants import dequantize

    r = gguf.GGUFReader(str(path))
    arch = _gguf_value(r, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: architecture {arch!r}, expected llama")

    def key(k, default=None):
        return _gguf_value(r, f"llama.{k}", default)

    tensors = {t.name: t for t in r.tensors}

    def getter(name):
        t = tensors[name]
        rows_cols = tuple(int(n) for n in reversed(list(t.shape)))  # ggml ne[0] is the fastest axis

        def get():
            a = dequantize(t.data, t.tensor_type)
            return np.asarray(a, dtype=np.float32).reshape(rows_cols)
        return get

    dim = int(key("embedding_length"))
    n_heads = int(key("attention.head_count"))
    n_kv = int(key("attention.head_count_kv", n_heads))
    head_dim = int(key("attention.key_length", dim // n_heads))
    rope_dim = int(key("rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise ValueError(f"{path}: partial rotary ({rope_dim} of {head_dim}) is not a llama layout")
    n_layers = int(key("block_count"))
    hidden = int(key("feed_forward_length"))
    emb_t = tensors["token_embd.weight"]
    vocab = int(list(emb_t.shape)[1])
    inv = rope_inv_freq(head_dim, float(key("rope.freq_base", 10000.0)))
    stype = key("rope.scaling.type")
    if stype == "linear":
        inv = inv / float(key("rope.scaling.factor", 1.0))
    elif stype not in (None, "none"):
        raise ValueError(f"{path}: unsupported rope scaling {stype!r}")
    if "rope_freqs.weight" in tensors:
        # llama.cpp stores LLaMA-3.1 scaling as per-frequency divisors
        inv = inv / getter("rope_freqs.weight")().astype(np.float64).reshape(-1)
    cfg = RefConfig(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv,
                    head_dim=head_dim, vocab_size=vocab,
                    norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)), norm="rms",
                    rope_style="interleaved", inv_freq=inv)
    layers = []
    for l in range(n_layers):
        b = f"blk.{l}."
        layers.append(dict(attn_norm=getter(b + "attn_norm.weight"), wq=getter(b + "attn_q.weight"),
                           wk=getter(b + "attn_k.weight"), wv=getter(b + "attn_v.weight"),
                           wo=getter(b + "attn_output.weight"), ffn_norm=getter(b + "ffn_norm.weight"),
                           w_gate=getter(b + "ffn_gate.weight"), w_up=getter(b + "ffn_up.weight"),
                           w_down=getter(b + "ffn_down.weight")))
    emb = getter("token_embd.weight")()
    head = getter("output.weight") if "output.weight" in tensors else emb
    return RefModel(cfg, emb, layers, getter("output_norm.weight"), head)


# --------------------------------------------------------------------------
# safetensors and Hugging Face directories

_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def read_safetensors(path):
    """{name: float64 array} from a .safetensors file (8-byte little-endian
    header length, JSON header, raw little-endian data)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        if dt not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dt}")
        b, e = info["data_offsets"]
        a = np.frombuffer(raw, dtype=_ST_DTYPES[dt], count=(e - b) // np.dtype(_ST_DTYPES[dt]).itemsize,
                          offset=base + b)
        if dt == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = a.astype(np.float64).reshape(info["shape"])
    return out


def _hf_tensors(d):
    d = Path(d)
    index = d / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in d.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{d}: no safetensors files")
    out = {}
    for f in files:
        out.update(read_safetensors(d / f))
    return out


def _is_openlm(cfg, tensors):
    arch = " ".join(cfg.get("architectures") or [])
    return (cfg.get("model_type") == "openlm" or "OpenLM" in arch
            or any(".attention.in_proj.weight" in k for k in tensors))


def load_hf(d):
    """A Hugging Face directory: LlamaForCausalLM, or OpenLM (DCLM)."""
    d = Path(d)
    cfg = json.loads((d / "config.json").read_text())
    t = _hf_tensors(d)
    if _is_openlm(cfg, t):
        return _load_openlm(cfg, t, d)
    dim = int(cfg["hidden_size"])
    n_heads = int(cfg["num_attention_heads"])
    n_kv = int(cfg.get("num_key_value_heads") or n_heads)
    head_dim = int(cfg.get("head_dim") or dim // n_heads)
    n_layers = int(cfg["num_hidden_layers"])
    scaling = cfg.get("rope_scaling")
    inv = rope_inv_freq(head_dim, float(cfg.get("rope_theta", 10000.0)), scaling)
    rc = RefConfig(dim=dim, hidden_dim=int(cfg["intermediate_size"]), n_layers=n_layers, n_heads=n_heads,
                   n_kv_heads=n_kv, head_dim=head_dim, vocab_size=int(cfg["vocab_size"]),
                   norm_eps=float(cfg.get("rms_norm_eps", 1e-6)), norm="rms", rope_style="half", inv_freq=inv)
    layers = []
    for l in range(n_layers):
        p = f"model.layers.{l}."
        layers.append(dict(attn_norm=t[p + "input_layernorm.weight"], wq=t[p + "self_attn.q_proj.weight"],
                           wk=t[p + "self_attn.k_proj.weight"], wv=t[p + "self_attn.v_proj.weight"],
                           wo=t[p + "self_attn.o_proj.weight"], ffn_norm=t[p + "post_attention_layernorm.weight"],
                           w_gate=t[p + "mlp.gate_proj.weight"], w_up=t[p + "mlp.up_proj.weight"],
                           w_down=t[p + "mlp.down_proj.weight"]))
    emb = t["model.embed_tokens.weight"]
    tied = bool(cfg.get("tie_word_embeddings", False))
    if tied or "lm_head.weight" not in t:
        if not tied:
            raise ValueError(f"{d}: lm_head.weight missing and tie_word_embeddings is false")
        head = emb
    else:
        head = t["lm_head.weight"]
    return RefModel(rc, emb, layers, t["model.norm.weight"], head)


def _openlm_params(cfg):
    """OpenLM configs keep the architecture under params_args_dict (HF
    export) or at the top level."""
    p = dict(cfg)
    for k in ("params_args_dict", "params"):
        if isinstance(cfg.get(k), dict):
            p.update(cfg[k])
    return p


def _load_openlm(cfg, t, d):
    p = _openlm_params(cfg)
    prefix = "model." if any(k.startswith("model.") for k in t) else ""
    if prefix + "tok_embeddings.weight" not in t and "model.transformer.tok_embeddings.weight" in t:
        prefix = "model.transformer."
    dim = int(p.get("dim", p.get("hidden_dim", 0)) or t[prefix + "tok_embeddings.weight"].shape[1])
    n_heads = int(p["n_heads"])
    n_layers = int(p["n_layers"])
    head_dim = dim // n_heads
    norm_type = p.get("norm_type", p.get("model_norm", "gain_only_lp_layer_norm"))
    norms = {"gain_only_lp_layer_norm": "layer_gain", "gain_only_layer_norm": "layer_gain", "rms_norm": "rms"}
    if norm_type not in norms:
        raise ValueError(f"{d}: unsupported OpenLM norm {norm_type!r}")
    if p.get("positional_embedding_type", "rotary") != "rotary":
        raise ValueError(f"{d}: unsupported OpenLM positional embedding")
    qk = bool(p.get("apply_qk_norm", p.get("qk_norm", False)))
    w12_0 = t[prefix + "layers.0.feed_forward.w12.weight"]
    hidden = w12_0.shape[0] // 2
    layers = []
    for l in range(n_layers):
        b = f"{prefix}layers.{l}."
        q, k, v = np.split(t[b + "attention.in_proj.weight"], 3, axis=0)
        gate, up = np.split(t[b + "feed_forward.w12.weight"], 2, axis=0)  # chunk(2): gate first
        L = dict(attn_norm=t[b + "attention_norm.weight"], wq=q, wk=k, wv=v,
                 wo=t[b + "attention.out_proj.weight"], ffn_norm=t[b + "ffn_norm.weight"],
                 w_gate=gate, w_up=up, w_down=t[b + "feed_forward.w3.weight"])
        if qk:
            L["q_norm"] = t[b + "attention.q_norm.weight"]
            L["k_norm"] = t[b + "attention.k_norm.weight"]
        layers.append(L)
    emb = t[prefix + "tok_embeddings.weight"]
    tied = bool(p.get("weight_tying", False))
    head = emb if tied else t[prefix + "output.weight"]
    # OpenLM's RotaryEmbedding hard-codes base 10000 over the head dimension
    rc = RefConfig(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_heads,
                   head_dim=head_dim, vocab_size=int(emb.shape[0]), norm_eps=float(p.get("norm_eps", 1e-5)),
                   norm=norms[norm_type], rope_style="half", inv_freq=rope_inv_freq(head_dim, 10000.0), qk_norm=qk)
    return RefModel(rc, emb, layers, t[prefix + "norm.weight"], head)


# --------------------------------------------------------------------------

def load(path):
    """Detects the format the way kickgrid's checkpoint reader does."""
    path = Path(path)
    if path.is_dir():
        return load_hf(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return load_gguf(path)
    return load_llama2c(path)


def compare(ours, ref):
    """(max relative error max|a-b|/max|b|, per-row max abs error)."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    diff = np.abs(ours - ref)
    return float(diff.max() / np.abs(ref).max()), diff.max(axis=-1)


if __name__ == "__main__":
    import sys
    m = load(sys.argv[1])
    print(m.cfg)
    if os.environ.get("REF_TOKENS"):
        toks = [int(x) for x in os.environ["REF_TOKENS"].split(",")]
        print(np.argmax(m.logits(toks), axis=-1).tolist())
