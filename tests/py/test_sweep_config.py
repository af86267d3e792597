"""Sweep configs through `kickgrid plan`: the malformed-config corpus (exact
FILE:LINE diagnostics and exit codes), the shipped configs, and the cell
expansion checked against an independent expansion of the configs read with
libconf (a pure-Python libconfig reader), written from configs/README.md."""
import io
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from kgtest import DATA_DIR, KICKGRID, SOURCE_DIR

CORPUS = SOURCE_DIR / "tests" / "data" / "configs"
CONFIGS = SOURCE_DIR / "configs"
PAPER = ["wanda-sparsegpt-table", "llm-kick", "calibration-study", "js-divergence-study"]
MISSING_MODEL = "does not exist and is not a model alias"


def plan(*args, cwd=CORPUS):
    """Runs `kickgrid plan` in `cwd`, since diagnostics name files as given."""
    return subprocess.run([KICKGRID, "plan", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def diagnostics(stderr):
    """stderr minus the final 'kickgrid plan: ...' summary line."""
    return [line for line in stderr.splitlines() if not line.startswith("kickgrid plan:")]


# ---- the malformed corpus ----------------------------------------------------

BAD = sorted(p.name for p in CORPUS.glob("bad_*.cfg"))


def test_corpus_is_complete():
    assert len(BAD) >= 15
    for name in BAD:
        assert (CORPUS / name.replace(".cfg", ".expect")).exists(), name


@pytest.mark.parametrize("name", BAD)
def test_bad_config(name):
    proc = plan(name)
    expected = (CORPUS / name.replace(".cfg", ".expect")).read_text().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert diagnostics(proc.stderr) == expected
    assert proc.stderr.splitlines()[-1].startswith(f"kickgrid plan: {name}: ")
    assert proc.stdout == ""


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("warn_*.cfg")))
def test_warning_config(name):
    proc = plan(name)
    assert proc.returncode == 0, proc.stderr
    expected = (CORPUS / name.replace(".cfg", ".expect")).read_text().splitlines()
    assert proc.stderr.splitlines() == expected
    assert all(": warning: " in line for line in expected)
    assert "counts: computed" in proc.stdout


def test_several_errors_reported_together():
    proc = plan("bad_many.cfg")
    lines = diagnostics(proc.stderr)
    assert len(lines) >= 8
    assert [int(line.split(":")[1]) for line in lines] == sorted(int(line.split(":")[1]) for line in lines)


def test_include_diagnostics_name_the_file_from_the_working_directory():
    proc = plan("tests/data/configs/bad_in_include.cfg", cwd=SOURCE_DIR)
    assert proc.returncode == 1
    expected = [("tests/data/configs/" + line) for line in (CORPUS / "bad_in_include.expect").read_text().splitlines()]
    assert diagnostics(proc.stderr) == expected


def test_json_on_error_lists_diagnostics():
    proc = plan("--json", "bad_nsamples_zero.cfg")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["valid"] is False
    assert [(d["line"], d["severity"]) for d in doc["diagnostics"]] == [(5, "error")]
    assert "nsamples" in doc["diagnostics"][0]["message"]


def test_unreadable_config_and_usage(tmp_path):
    proc = plan(str(tmp_path / "nope.cfg"))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == f"{tmp_path / 'nope.cfg'}: cannot read the config: No such file or directory"
    assert plan().returncode == 2
    assert plan("--bogus", "good_minimal.cfg").returncode == 2
    assert plan("a.cfg", "b.cfg").returncode == 2
    proc = plan("--help")
    assert proc.returncode == 0 and "--allow-missing-models" in proc.stdout


def test_ranks_check_the_team_and_split_the_time():
    # good_full.cfg asks for teams of 2 (grid.team_size at line 29)
    proc = plan("--ranks", "2", "good_full.cfg")
    assert proc.returncode == 1
    assert "good_full.cfg:29: grid.team_size: 2 is larger than the 1 working rank of this run" in proc.stderr
    assert plan("--ranks", "3", "good_full.cfg").returncode == 0
    whole = json.loads(plan("--json", "good_full.cfg").stdout)["cost"]
    split = json.loads(plan("--json", "--ranks", "9", "good_full.cfg").stdout)["cost"]
    assert "teams" not in whole and split["teams"] == 4  # 8 working ranks in teams of 2
    assert split["h100_wall_hours"] == pytest.approx(whole["h100_hours"] / 4)
    assert plan("--ranks", "0", "good_full.cfg").returncode == 2


def test_missing_model_downgraded_to_warning():
    proc = plan("--allow-missing-models", "bad_missing_model.cfg")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("bad_missing_model.cfg:2: warning: models[0].path: ") and MISSING_MODEL in line


# ---- shipped configs -----------------------------------------------------------

def test_shipped_configs_exist():
    for name in ["quickstart"] + PAPER:
        assert (CONFIGS / f"{name}.cfg").exists()
    for name in PAPER:
        assert (CONFIGS / f"{name}-synthetic.cfg").exists()


@pytest.mark.parametrize("name", ["quickstart"] + [f"{n}-synthetic" for n in PAPER])
def test_runnable_configs_are_clean(name):
    proc = plan(f"configs/{name}.cfg", cwd=SOURCE_DIR)
    assert proc.returncode == 0, proc.stderr
    # the only acceptable remark: the alias still has to be fetched on this machine
    assert all(": warning: " in line and "is not downloaded" in line for line in proc.stderr.splitlines())


@pytest.mark.parametrize("name", PAPER)
def test_paper_configs_fail_only_on_placeholder_paths(name):
    proc = plan(f"configs/{name}.cfg", cwd=SOURCE_DIR)
    lines = diagnostics(proc.stderr)
    if proc.returncode == 0:
        pytest.skip("the placeholder model paths exist on this machine")
    assert proc.returncode == 1
    assert lines and all(MISSING_MODEL in line and ": warning: " not in line for line in lines), lines
    proc = plan("--allow-missing-models", f"configs/{name}.cfg", cwd=SOURCE_DIR)
    assert proc.returncode == 0, proc.stderr
    assert all(MISSING_MODEL in line and ": warning: " in line for line in proc.stderr.splitlines())


def test_synthetic_variants_share_the_grid():
    """A dry run fills the same cube as the real run: same dims, same cells."""
    for name in PAPER:
        real = json.loads(plan("--json", "--allow-missing-models", f"configs/{name}.cfg", cwd=SOURCE_DIR).stdout)
        dry = json.loads(plan("--json", f"configs/{name}-synthetic.cfg", cwd=SOURCE_DIR).stdout)
        assert real["dims"] == dry["dims"]
        assert [c["key"] for c in real["cells"]] == [c["key"] for c in dry["cells"]]


# ---- cell expansion against an independent oracle --------------------------------

def load_config(path):
    libconf = pytest.importorskip("libconf")
    with io.open(path) as f:
        return libconf.load(f, includedir=str(Path(path).parent))


def as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def float_label(x):
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


def expected_plan(cfg):
    """Cube dims and cells from the README's definitions."""
    models = [m["name"] for m in cfg["models"]]
    prune = [m for m in as_list(cfg.get("prune_method", [])) if m != "dense"]
    quant = []
    for q in cfg.get("quantization", []):
        g = q.get("group_size", -1)
        quant.append(f"{q['method']}-w{q['bits']}" + (f"g{g}" if g > 0 else "") + ("-sym" if q.get("sym") else "")
                     + ("-ao" if q.get("act_order") else ""))
    methods = ["dense"] + prune + quant
    points = []  # (ratio, structure)
    for s in as_list(cfg.get("sparsity", [])):
        if isinstance(s, str):
            n, m = map(int, s.split(":"))
            points.append((n / m, s))
        else:
            points.append((float(s), "unstructured"))
    ratios = sorted({0.0} | {r for r, _ in points})
    structures = ["unstructured"] + list(dict.fromkeys(st for _, st in points if st != "unstructured"))
    calibs = [c["name"] for c in cfg.get("calibration", [])] or ["none"]
    no_calib = {"dense", "magnitude"} | {q for q in quant if q.startswith("rtn")}

    def exists(method, ratio, structure):
        if method == "dense" or method in quant:
            return ratio == 0.0 and structure == "unstructured"
        if method.startswith("owl-") and structure != "unstructured":
            return False
        return (ratio, structure) in points

    cells, na = [], []
    for mo in models:
        for me in methods:
            for r in ratios:
                for st in structures:
                    if not exists(me, r, st):
                        continue
                    for i, c in enumerate(calibs):
                        key = f"{mo}|{me}|{float_label(r)}|{st}|{c}"
                        first = f"{mo}|{me}|{float_label(r)}|{st}|{calibs[0]}"
                        cells.append((key, first if (me in no_calib and i > 0) else None))
    for me in methods:
        for r in ratios:
            for st in structures:
                if not exists(me, r, st):
                    na.append((me, r, st))
    dims = {"model": models, "prune_method": methods, "sparsity": ratios, "structure": structures,
            "calibration": calibs}
    return dims, cells, na


ORACLE_CASES = [(CORPUS, "good_full.cfg"), (CORPUS, "good_minimal.cfg"), (CORPUS, "warn_owl_nm.cfg"),
                (CORPUS, "warn_unused.cfg"), (SOURCE_DIR, "configs/quickstart.cfg")] + \
               [(SOURCE_DIR, f"configs/{n}-synthetic.cfg") for n in PAPER]


@pytest.mark.parametrize("cwd,name", ORACLE_CASES)
def test_cells_match_oracle(cwd, name):
    dims, cells, na = expected_plan(load_config(cwd / name))
    proc = plan("--json", name, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["dims"] == dims
    got = [(c["key"], c.get("replica_of")) for c in doc["cells"]]
    assert got == cells
    statuses = {c["status"] for c in doc["cells"]}
    assert statuses <= {"computed", "replica"}
    assert [(s["prune_method"], s["sparsity"], s["structure"]) for s in doc["na_slots"]] == na
    size = 1
    for v in dims.values():
        size *= len(v)
    counts = doc["counts"]
    assert counts["total"] == size
    assert counts["computed"] == sum(1 for _, r in cells if r is None)
    assert counts["replicas"] == sum(1 for _, r in cells if r is not None)
    assert counts["na"] == size - len(cells)
    # Cell indices address the cube positions named by the key.
    for c in doc["cells"]:
        parts = c["key"].split("|")
        idx = c["index"]
        assert dims["model"][idx[0]] == parts[0] and dims["prune_method"][idx[1]] == parts[1]
        assert float_label(dims["sparsity"][idx[2]]) == parts[2]
        assert dims["structure"][idx[3]] == parts[3] and dims["calibration"][idx[4]] == parts[4]


# ---- parameter counts against the model files ------------------------------------

def model_params(name, cwd, path_or_alias, tmp_path):
    cfg = tmp_path / "one.cfg"
    cfg.write_text(f'name = "one";\nmodels = ( {{ name = "{name}"; path = "{path_or_alias}"; }} );\n'
                   'evaluation = { tasks = ( { name = "piqa"; limit = 1; } ); };\n')
    proc = plan("--json", str(cfg), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    (m,) = json.loads(proc.stdout)["models"]
    return m


def test_params_of_llama2c_header(tmp_path):
    path = DATA_DIR / "models/stories260K/stories260K.bin"
    if not path.exists():
        pytest.skip(f"{path} not present")
    raw = path.read_bytes()
    dim, hidden, layers, heads, kv, vocab, seq = struct.unpack("<7i", raw[:28])
    floats = (len(raw) - 28) // 4
    freq_cis = seq * (dim // heads)  # the legacy real+imag tables, seq x head_dim/2 each
    m = model_params("stories", tmp_path, str(path), tmp_path)
    assert m["params"] == floats - freq_cis
    assert m["context"] == seq and m["layers"] == layers


def test_params_of_alias_match_the_gguf(tmp_path):
    gguf_path = os.environ.get("KG_SMOLLM2_GGUF")
    if not gguf_path or not Path(gguf_path).exists():
        pytest.skip("KG_SMOLLM2_GGUF not set")
    gguf = pytest.importorskip("gguf")
    import numpy as np
    reader = gguf.GGUFReader(gguf_path)
    n = sum(int(np.prod(t.shape)) for t in reader.tensors)
    m = model_params("smol", tmp_path, "smollm2", tmp_path)
    assert m["params"] == n and m["source"] == "alias" and m["open"] == "smollm2"
    ctx = int(reader.fields["llama.context_length"].parts[-1][0])
    assert m["context"] == ctx


def write_safetensors(path, tensors):
    """tensors: name -> shape; float32 zeros (the header is what is read)."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + bytes(offset))


def test_params_of_hf_directory(tmp_path):
    hf = tmp_path / "tiny-hf"
    hf.mkdir()
    d, h, layers, heads, kv, vocab = 64, 160, 2, 8, 4, 96
    hd = d // heads
    (hf / "config.json").write_text(json.dumps(dict(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=d, intermediate_size=h,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab,
        max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)))
    tensors = {"model.embed_tokens.weight": (vocab, d), "model.norm.weight": (d,), "lm_head.weight": (vocab, d)}
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors.update({p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
                        p + "self_attn.q_proj.weight": (heads * hd, d), p + "self_attn.k_proj.weight": (kv * hd, d),
                        p + "self_attn.v_proj.weight": (kv * hd, d), p + "self_attn.o_proj.weight": (d, heads * hd),
                        p + "mlp.gate_proj.weight": (h, d), p + "mlp.up_proj.weight": (h, d),
                        p + "mlp.down_proj.weight": (d, h)})
    write_safetensors(hf / "model.safetensors", tensors)
    expected = 0
    for shape in tensors.values():
        n = 1
        for x in shape:
            n *= x
        expected += n
    m = model_params("hf", tmp_path, str(hf), tmp_path)
    assert m["params"] == expected
    assert m["context"] == 256 and m["layers"] == layers


def test_params_of_gguf_file(tmp_path):
    gguf_path = os.environ.get("KG_SMOLLM2_GGUF")
    if not gguf_path or not Path(gguf_path).exists():
        pytest.skip("KG_SMOLLM2_GGUF not set")
    gguf = pytest.importorskip("gguf")
    import numpy as np
    n = sum(int(np.prod(t.shape)) for t in gguf.GGUFReader(gguf_path).tensors)
    m = model_params("smol", tmp_path, gguf_path, tmp_path)
    assert m["params"] == n and m["source"] == "path"


def test_unreadable_model_file_is_an_error(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 40)
    cfg = tmp_path / "junk.cfg"
    cfg.write_text('name = "j";\nmodels = ( { name = "j"; path = "junk.bin"; } );\n'
                   'evaluation = { tasks = ( { name = "piqa"; } ); };\n')
    proc = plan(str(cfg), cwd=tmp_path)
    assert proc.returncode == 1
    (line,) = diagnostics(proc.stderr)
    assert line.startswith(f"{cfg}:2: models[0].path: ") and "junk.bin" in line


def test_cost_scales_with_the_grid(tmp_path):
    """Doubling nsamples doubles calibration FLOPs; evaluation FLOPs are 2 * P * tokens."""
    def cost(nsamples):
        cfg = tmp_path / f"c{nsamples}.cfg"
        cfg.write_text('name = "c";\nmodels = ( { name = "t"; synthetic = "stories260K"; } );\n'
                       'prune_method = [ "wanda" ];\nsparsity = [ 0.5 ];\n'
                       f'calibration = ( {{ name = "c4"; source = "c4"; nsamples = {nsamples}; seqlen = 256; }} );\n'
                       'evaluation = { perplexity = ( { dataset = "wikitext2"; seqlen = 256; max_windows = 10; } ); };\n')
        doc = json.loads(plan("--json", str(cfg), cwd=tmp_path).stdout)
        (cell,) = [c for c in doc["cells"] if "wanda" in c["key"]]
        return cell, doc["models"][0]["params"]
    a, params = cost(8)
    b, _ = cost(16)
    assert b["calibration_flops"] == pytest.approx(2 * a["calibration_flops"])
    # two passes (statistics, then pruned outputs) of 2 * P FLOPs per token
    assert a["calibration_flops"] == pytest.approx(2 * 2 * params * 8 * 256)
    assert a["evaluation_flops"] == pytest.approx(2 * params * 10 * 256)
    assert a["hessian_flops"] == 0
