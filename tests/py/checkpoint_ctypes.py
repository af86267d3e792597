"""ctypes mirrors of io/checkpoint.h and io/model_config.h for the checkpoint
tests, plus small writers of the file formats written from their
specifications (independent of kickgrid's own writers)."""
import ctypes
import json
import struct
from contextlib import contextmanager

import numpy as np

from kgtest import last_error, lib


class ModelConfig(ctypes.Structure):
    _fields_ = [("arch", ctypes.c_int), ("name", ctypes.c_char * 64), ("dim", ctypes.c_int),
                ("hidden_dim", ctypes.c_int), ("n_layers", ctypes.c_int), ("n_heads", ctypes.c_int),
                ("n_kv_heads", ctypes.c_int), ("head_dim", ctypes.c_int), ("vocab_size", ctypes.c_int),
                ("max_seq_len", ctypes.c_int), ("norm_eps", ctypes.c_float), ("norm", ctypes.c_int),
                ("qk_norm", ctypes.c_int), ("rope_theta", ctypes.c_float), ("rope_scaling", ctypes.c_int),
                ("rope_factor", ctypes.c_float), ("rope_low_freq_factor", ctypes.c_float),
                ("rope_high_freq_factor", ctypes.c_float), ("rope_original_max_pos", ctypes.c_int),
                ("tied_embeddings", ctypes.c_int), ("bos_id", ctypes.c_int), ("eos_id", ctypes.c_int)]


class TensorRef(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("ndim", ctypes.c_int),
                ("shape", ctypes.c_int64 * 4), ("data", ctypes.c_void_p), ("nbytes", ctypes.c_size_t)]


class Checkpoint(ctypes.Structure):
    _fields_ = [("format", ctypes.c_int), ("path", ctypes.c_char_p), ("config", ModelConfig),
                ("tensors", ctypes.POINTER(TensorRef)), ("n_tensors", ctypes.c_size_t),
                ("rope_interleaved", ctypes.c_int), ("gguf", ctypes.c_void_p), ("arena", ctypes.c_void_p),
                ("tensors_cap", ctypes.c_size_t)]


KG_ARCH_LLAMA, KG_ARCH_DCLM = 0, 1
KG_NORM_RMS, KG_NORM_LAYER_GAIN = 0, 1
KG_ROPE_NONE, KG_ROPE_LLAMA3, KG_ROPE_LINEAR = 0, 1, 2
FORMATS = {0: "llama2c", 1: "hf", 2: "gguf", 3: "synthetic"}


def dtype_id(name):
    out = ctypes.c_int()
    assert lib().kg_dtype_from_name(name.encode(), ctypes.byref(out)) == 0, name
    return out.value


def dtype_name(i):
    f = lib().kg_dtype_name
    f.restype = ctypes.c_char_p
    return f(i).decode()


def _setup():
    L = lib()
    L.kg_checkpoint_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(Checkpoint))]
    L.kg_hf_open.argtypes = L.kg_checkpoint_open.argtypes
    L.kg_checkpoint_close.argtypes = [ctypes.POINTER(Checkpoint)]
    L.kg_dequantize.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    L.kg_hf_write.argtypes = [ctypes.c_char_p, ctypes.POINTER(ModelConfig), ctypes.POINTER(TensorRef),
                              ctypes.c_size_t, ctypes.c_int, ctypes.c_size_t]
    return L


@contextmanager
def opened(path, opener="kg_checkpoint_open"):
    """Yields the kg_checkpoint struct of `path`; raises with kickgrid's message on failure."""
    L = _setup()
    p = ctypes.POINTER(Checkpoint)()
    rc = getattr(L, opener)(str(path).encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError(last_error())
    try:
        yield p.contents
    finally:
        L.kg_checkpoint_close(p)


def open_error(path):
    """The (code, message) kg_checkpoint_open gives for a bad file."""
    L = _setup()
    p = ctypes.POINTER(Checkpoint)()
    rc = L.kg_checkpoint_open(str(path).encode(), ctypes.byref(p))
    if rc == 0:
        L.kg_checkpoint_close(p)
    return rc, last_error()


def tensors(ck):
    return {ck.tensors[i].name.decode(): ck.tensors[i] for i in range(ck.n_tensors)}


def raw_bytes(t):
    return ctypes.string_at(t.data, t.nbytes)


def shape_of(t):
    return tuple(t.shape[d] for d in range(t.ndim))


def dequantize_bytes(dtype, raw, n):
    """kg_dequantize of n values held in the numpy array `raw`."""
    out = np.empty(n, dtype=np.float32)
    rc = _setup().kg_dequantize(dtype, raw.ctypes.data, out.ctypes.data, n)
    assert rc == 0, last_error()
    return out


def as_f32(t):
    """A tensor converted by kg_dequantize, shaped like the tensor."""
    n = int(np.prod(shape_of(t))) if t.ndim else 1
    out = np.empty(n, dtype=np.float32)
    rc = _setup().kg_dequantize(t.dtype, t.data, out.ctypes.data, n)
    assert rc == 0, last_error()
    return out.reshape(shape_of(t))


# ---- bf16 written from its definition (round to nearest even on the top 16 bits) ----

def f32_to_bf16_bits(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


# ---- safetensors written from the format description ----

def st_bytes(entries, metadata=None, pad_to=8, header_override=None):
    """entries: list of (name, dtype string, shape, raw bytes). Returns the file bytes."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs, off = [], 0
    for name, dt, shape, raw in entries:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header if header_override is None else header_override).encode()
    h += b" " * ((-len(h) - 8) % pad_to)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def st_parse(path):
    """Independent reader: (header dict, data bytes)."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def st_array(header, data, name):
    e = header[name]
    b, end = e["data_offsets"]
    buf = data[b:end]
    if e["dtype"] == "BF16":
        return bf16_bits_to_f32(np.frombuffer(buf, dtype=np.uint16)).reshape(e["shape"])
    dt = {"F32": np.float32, "F16": np.float16}[e["dtype"]]
    return np.frombuffer(buf, dtype=dt).reshape(e["shape"])
