# ctest-labels: py
"""kg_dequantize against the gguf package's NumPy dequantization (an
independent implementation of the ggml formats): random blocks of every type
it implements, and every tensor of the SmolLM2-135M Q4_1 GGUF (env
KG_SMOLLM2_GGUF) read through kickgrid's GGUF reader and mapping."""
import os

import numpy as np
import pytest

from checkpoint_ctypes import as_f32, dequantize_bytes, dtype_id, opened, raw_bytes, shape_of, tensors

gguf = pytest.importorskip("gguf")
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

# byte offsets of the f16 scale fields inside one block (ggml layouts)
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def random_blocks(qtype, n_blocks, rng):
    elems, size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in F16_FIELDS.get(qtype, []):
        # finite scales over a wide range, both signs (random bytes could be NaN/inf)
        mag = rng.uniform(-12, 3, size=n_blocks)
        d = (np.sign(rng.standard_normal(n_blocks)) * 2.0 ** mag).astype(np.float16)
        raw[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1), n_blocks * elems


@pytest.mark.parametrize("qtype", list(F16_FIELDS) + [T.F16, T.BF16])
def test_random_blocks_match_gguf(qtype):
    rng = np.random.default_rng(int(qtype) + 17)
    if qtype in (T.F16, T.BF16):
        raw = rng.integers(0, 256, size=2 * 4096, dtype=np.uint8)  # every bit pattern class, NaN included
        n = 4096
    else:
        raw, n = random_blocks(qtype, 64, rng)
    want = dequantize(raw, qtype).reshape(-1).astype(np.float32)
    got = dequantize_bytes(dtype_id(qtype.name.lower()), raw, n)
    np.testing.assert_array_equal(got, want)


def smollm2_path():
    p = os.environ.get("KG_SMOLLM2_GGUF")
    if not p or not os.path.exists(p):
        pytest.skip("KG_SMOLLM2_GGUF not set or missing")
    return p


GGUF_TO_HF = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
              "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
              "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"}


def hf_name(gguf_name):
    fixed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    if gguf_name in fixed:
        return fixed[gguf_name]
    _, layer, part, _ = gguf_name.split(".")
    return f"model.layers.{layer}.{GGUF_TO_HF[part]}.weight"


def test_smollm2_every_tensor_matches_gguf():
    path = smollm2_path()
    reader = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
    with opened(path) as ck:
        c = ck.config
        assert (c.dim, c.hidden_dim, c.n_layers) == (meta["llama.embedding_length"],
                                                      meta["llama.feed_forward_length"], meta["llama.block_count"])
        assert (c.n_heads, c.n_kv_heads) == (meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"])
        assert c.head_dim == meta["llama.rope.dimension_count"]
        assert c.max_seq_len == meta["llama.context_length"]
        assert c.rope_theta == np.float32(meta["llama.rope.freq_base"])
        assert c.norm_eps == np.float32(meta["llama.attention.layer_norm_rms_epsilon"])
        assert c.bos_id == reader.fields["tokenizer.ggml.bos_token_id"].contents()
        assert c.eos_id == reader.fields["tokenizer.ggml.eos_token_id"].contents()
        assert c.vocab_size == len(reader.fields["tokenizer.ggml.tokens"].data)
        names = [t.name for t in reader.tensors]
        assert c.tied_embeddings == ("output.weight" not in names)
        assert ck.rope_interleaved == 1
        ours = tensors(ck)
        assert len(ours) == len(reader.tensors)
        for t in reader.tensors:
            mine = ours[hf_name(t.name)]
            assert shape_of(mine) == tuple(int(x) for x in reversed(t.shape)), t.name
            assert raw_bytes(mine) == t.data.tobytes(), t.name  # same bytes: offsets and sizes agree
            want = dequantize(t.data, t.tensor_type).reshape(-1)
            got = as_f32(mine).reshape(-1)
            np.testing.assert_array_equal(got, want, err_msg=t.name)
