# ctest-labels: py
"""`kickgrid synth`: same spec and seed give the same bytes, another seed
other bytes; the directory loads with the safetensors package and kickgrid
(inspect) with the preset's numbers; weights have the intended moments;
sharding and the DCLM layout; usage errors."""
import json

import numpy as np
import pytest

from checkpoint_ctypes import st_parse
from kgtest import run


def synth(tmp_path, name, spec, *opts):
    out = tmp_path / name
    p = run("synth", spec, "--out", out, *opts)
    assert "GB/s" in p.stderr
    return out


def test_same_seed_same_bytes(tmp_path):
    a = synth(tmp_path, "a", "stories260k", "--seed", "3", "--dtype", "f32")
    b = synth(tmp_path, "b", "stories260k,seed=3", "--dtype", "f32")
    c = synth(tmp_path, "c", "stories260k", "--seed", "4", "--dtype", "f32")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "config.json").read_text() == (b / "config.json").read_text()
    ha, da = st_parse(a / "model.safetensors")
    hc, dc = st_parse(c / "model.safetensors")
    for name, e in ha.items():
        if name == "__metadata__" or len(e["shape"]) == 1:
            continue
        s, t = e["data_offsets"]
        u, v = hc[name]["data_offsets"]
        assert da[s:t] != dc[u:v], name


def test_loads_with_preset_numbers_and_moments(tmp_path):
    d = synth(tmp_path, "s", "smollm2-135m,layers=2", "--dtype", "f32")
    j = json.loads(run("inspect", d, "--json").stdout)
    c = j["config"]
    assert (c["dim"], c["hidden_dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"], c["vocab_size"]) == (
        576, 1536, 2, 9, 3, 49152)
    assert c["tied_embeddings"] is True and c["rope_theta"] == 100000.0 and j["format"] == "hf"
    st = pytest.importorskip("safetensors.numpy")
    w = st.load_file(str(d / "model.safetensors"))
    assert "lm_head.weight" not in w and w["model.embed_tokens.weight"].shape == (49152, 576)
    emb = w["model.embed_tokens.weight"].astype(np.float64)
    assert abs(emb.mean()) < 1e-4 and abs(emb.std() - 0.02) < 2e-4
    assert np.all(w["model.layers.1.post_attention_layernorm.weight"] == 1.0)


def test_shards_and_dclm(tmp_path):
    d = synth(tmp_path, "sh", "llama-2-7b,dim=128,hidden=256,heads=4,layers=2,vocab=300", "--shard-gb", "0.0001")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 2
    assert json.loads(run("inspect", d, "--json").stdout)["dtypes"] == {"bf16": 2 + 2 * 9 + 1}
    d = synth(tmp_path, "dclm", "dclm-7b,dim=64,heads=4,layers=2,vocab=100")
    hdr, _ = st_parse(d / "model.safetensors")
    assert "model.layers.1.attention.in_proj.weight" in hdr and hdr["model.layers.1.feed_forward.w12.weight"][
        "shape"] == [512, 64]
    j = json.loads(run("inspect", d, "--json").stdout)
    assert j["config"]["arch"] == "dclm" and j["config"]["hidden_dim"] == 256 and j["config"]["qk_norm"] is True


def test_synth_errors(tmp_path):
    p = run("synth", "llama-2-7b,wings=3", "--out", tmp_path / "x", check=False)
    assert p.returncode == 1 and "unknown key 'wings'" in p.stderr
    assert run("synth", "llama-2-7b", check=False).returncode == 2
    assert run("synth", "llama-2-7b", "--out", tmp_path / "y", "--dtype", "q4_0", check=False).returncode == 2
    assert "usage: kickgrid synth" in run("synth", "--help").stdout
