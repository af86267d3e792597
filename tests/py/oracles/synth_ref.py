"""Writers for small synthetic checkpoints built with numpy, so the model
tests can cover layouts no shipped model has: Hugging Face directories
(LLaMA-2/3.1 configs, tied embeddings, fp16/bf16 storage, OpenLM/DCLM names),
llama2.c .bin files with a separate classifier, and GGUF llama files (with
llama.cpp's q/k permutation). The oracles in llama_ref.py read the files
back, so they see exactly the stored (rounded) values."""
import json
import struct
from pathlib import Path

import numpy as np


def bf16_bits(a):
    """float32 -> bfloat16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def write_safetensors(path, tensors, dtype="F32"):
    """tensors: {name: array}; stored as dtype F32, F16 or BF16."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.asarray(a, dtype=np.float32)
        if dtype == "F32":
            b = a.astype("<f4").tobytes()
        elif dtype == "F16":
            b = a.astype("<f2").tobytes()
        elif dtype == "BF16":
            b = bf16_bits(a).astype("<u2").tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def random_llama(rng, dim, hidden, n_layers, n_heads, n_kv, vocab, head_dim=None, tied=False, qk_std=1.0):
    """HF-named float32 weights. Linear weights have std qk_std/sqrt(fan_in)
    for q/k (larger values sharpen attention so RoPE matters) and
    1/sqrt(fan_in) otherwise; norm gains are near 1."""
    hd = head_dim or dim // n_heads

    def lin(rows, cols, s=1.0):
        return (rng.standard_normal((rows, cols)) * s / np.sqrt(cols)).astype(np.float32)

    def gain(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    w = {"model.embed_tokens.weight": rng.standard_normal((vocab, dim)).astype(np.float32),
         "model.norm.weight": gain(dim)}
    for l in range(n_layers):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = gain(dim)
        w[p + "self_attn.q_proj.weight"] = lin(n_heads * hd, dim, qk_std)
        w[p + "self_attn.k_proj.weight"] = lin(n_kv * hd, dim, qk_std)
        w[p + "self_attn.v_proj.weight"] = lin(n_kv * hd, dim)
        w[p + "self_attn.o_proj.weight"] = lin(dim, n_heads * hd)
        w[p + "post_attention_layernorm.weight"] = gain(dim)
        w[p + "mlp.gate_proj.weight"] = lin(hidden, dim)
        w[p + "mlp.up_proj.weight"] = lin(hidden, dim)
        w[p + "mlp.down_proj.weight"] = lin(dim, hidden)
    if not tied:
        w["lm_head.weight"] = lin(vocab, dim)
    return w


def llama_config(dim, hidden, n_layers, n_heads, n_kv, vocab, theta=10000.0, eps=1e-5, tied=False,
                 rope_scaling=None, head_dim=None, max_pos=4096):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": dim,
         "intermediate_size": hidden, "num_hidden_layers": n_layers, "num_attention_heads": n_heads,
         "num_key_value_heads": n_kv, "vocab_size": vocab, "rms_norm_eps": eps, "rope_theta": theta,
         "tie_word_embeddings": tied, "max_position_embeddings": max_pos, "hidden_act": "silu",
         "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    if head_dim:
        c["head_dim"] = head_dim
    if rope_scaling:
        c["rope_scaling"] = rope_scaling
    return c


def write_hf(d, config, weights, dtype="F32", shards=1):
    """config.json + model.safetensors (or an index and `shards` files)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config, indent=2))
    names = list(weights)
    if shards <= 1:
        write_safetensors(d / "model.safetensors", weights, dtype)
        return d
    wmap = {}
    for s in range(shards):
        fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: weights[n] for n in names[s::shards]}
        write_safetensors(d / fn, part, dtype)
        wmap.update({n: fn for n in part})
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wmap}))
    return d


def openlm_from_llama(w, n_layers, tied=False, qk_norm_dim=None, rng=None, prefix="model."):
    """OpenLM (DCLM) tensor names from HF-named weights: q/k/v fused into
    in_proj, gate/up fused into w12 (gate first), down is w3; qk-norm gains
    over the whole projection width are added when qk_norm_dim is given."""
    o = {prefix + "tok_embeddings.weight": w["model.embed_tokens.weight"],
         prefix + "norm.weight": w["model.norm.weight"]}
    for l in range(n_layers):
        p, q = f"model.layers.{l}.", f"{prefix}layers.{l}."
        o[q + "attention_norm.weight"] = w[p + "input_layernorm.weight"]
        o[q + "attention.in_proj.weight"] = np.concatenate(
            [w[p + "self_attn.q_proj.weight"], w[p + "self_attn.k_proj.weight"], w[p + "self_attn.v_proj.weight"]])
        o[q + "attention.out_proj.weight"] = w[p + "self_attn.o_proj.weight"]
        o[q + "ffn_norm.weight"] = w[p + "post_attention_layernorm.weight"]
        o[q + "feed_forward.w12.weight"] = np.concatenate([w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]])
        o[q + "feed_forward.w3.weight"] = w[p + "mlp.down_proj.weight"]
        if qk_norm_dim:
            o[q + "attention.q_norm.weight"] = (1.0 + 0.2 * rng.standard_normal(qk_norm_dim)).astype(np.float32)
            o[q + "attention.k_norm.weight"] = (1.0 + 0.2 * rng.standard_normal(qk_norm_dim)).astype(np.float32)
    if not tied:
        o[prefix + "output.weight"] = w["lm_head.weight"]
    return o


def openlm_config(dim, n_layers, n_heads, vocab, eps=1e-5, qk_norm=True, tied=False, seq_len=2048, nested=True,
                  norm="gain_only_lp_layer_norm"):
    """The shape of DCLM-7B's config.json: OpenLMForCausalLM with open_lm's
    Params nested in params_args_dict, or (nested=False) flat."""
    params = {"dim": dim, "n_layers": n_layers, "n_heads": n_heads, "vocab_size": vocab, "norm_eps": eps,
              "seq_len": seq_len, "post_embed_norm": False, "weight_tying": tied, "apply_qk_norm": qk_norm,
              "norm_type": norm,
              "positional_embedding_type": "rotary", "ffn_type": "swiglu_torch", "attn_name": "torch_attn"}
    head = {"architectures": ["OpenLMForCausalLM"], "model_type": "openlm"}
    return {**head, "params_args_dict": params} if nested else {**head, **params}


def meta_permute(w, n_heads):
    """llama.cpp's convert_hf_to_gguf permute: HF rotate-half rows ->
    Meta's interleaved-pair rows, per head."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama2c(path, w, n_layers, n_heads, n_kv, seq_len, shared, rng):
    """Legacy llama2.c layout from HF-named weights, q/k rows permuted to
    Meta's interleaved order (what llama2.c's model.py trains with)."""
    emb = w["model.embed_tokens.weight"]
    vocab, dim = emb.shape
    hidden = w["model.layers.0.mlp.gate_proj.weight"].shape[0]
    hs = dim // n_heads

    def stack(name, fn=lambda a: a):
        return np.stack([fn(w[f"model.layers.{l}.{name}"]) for l in range(n_layers)])

    parts = [emb, stack("input_layernorm.weight"),
             stack("self_attn.q_proj.weight", lambda a: meta_permute(a, n_heads)),
             stack("self_attn.k_proj.weight", lambda a: meta_permute(a, n_kv)),
             stack("self_attn.v_proj.weight"), stack("self_attn.o_proj.weight"),
             stack("post_attention_layernorm.weight"), stack("mlp.gate_proj.weight"),
             stack("mlp.down_proj.weight"), stack("mlp.up_proj.weight"), w["model.norm.weight"],
             # freq_cis tables run.c skips; junk values catch a reader that uses them
             rng.uniform(-50, 50, seq_len * hs).astype(np.float32)]
    if not shared:
        parts.append(w["lm_head.weight"])
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", dim, hidden, n_layers, n_heads, n_kv, vocab if shared else -vocab, seq_len))
        for a in parts:
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return path


def write_gguf(path, w, n_layers, n_heads, n_kv, theta=10000.0, eps=1e-5, qtype="F32", ctx=2048):
    """A GGUF llama file as llama.cpp's converter writes one: q/k permuted,
    GGUF tensor names, output.weight only when untied; 2-D weights stored
    as qtype (F32, F16, Q8_0, Q4_1, ...), norms as F32."""
    import gguf
    from gguf.quants import quantize

    emb = w["model.embed_tokens.weight"]
    vocab, dim = emb.shape
    hidden = w["model.layers.0.mlp.gate_proj.weight"].shape[0]
    wr = gguf.GGUFWriter(str(path), "llama")
    wr.add_block_count(n_layers)
    wr.add_context_length(ctx)
    wr.add_embedding_length(dim)
    wr.add_feed_forward_length(hidden)
    wr.add_head_count(n_heads)
    wr.add_head_count_kv(n_kv)
    wr.add_rope_freq_base(theta)
    wr.add_layer_norm_rms_eps(eps)
    wr.add_rope_dimension_count(dim // n_heads)
    wr.add_vocab_size(vocab)
    qt = gguf.GGMLQuantizationType[qtype]

    def add(name, a, matrix=True):
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not matrix or qt == gguf.GGMLQuantizationType.F32:
            wr.add_tensor(name, a)
        elif qt == gguf.GGMLQuantizationType.F16:
            wr.add_tensor(name, a.astype(np.float16))
        else:
            wr.add_tensor(name, quantize(a, qt), raw_dtype=qt)

    add("token_embd.weight", emb)
    for l in range(n_layers):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        add(b + "attn_norm.weight", w[p + "input_layernorm.weight"], False)
        add(b + "attn_q.weight", meta_permute(w[p + "self_attn.q_proj.weight"], n_heads))
        add(b + "attn_k.weight", meta_permute(w[p + "self_attn.k_proj.weight"], n_kv))
        add(b + "attn_v.weight", w[p + "self_attn.v_proj.weight"])
        add(b + "attn_output.weight", w[p + "self_attn.o_proj.weight"])
        add(b + "ffn_norm.weight", w[p + "post_attention_layernorm.weight"], False)
        add(b + "ffn_gate.weight", w[p + "mlp.gate_proj.weight"])
        add(b + "ffn_up.weight", w[p + "mlp.up_proj.weight"])
        add(b + "ffn_down.weight", w[p + "mlp.down_proj.weight"])
    add("output_norm.weight", w["model.norm.weight"], False)
    if "lm_head.weight" in w:
        add("output.weight", w["lm_head.weight"])
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path
