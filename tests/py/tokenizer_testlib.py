"""ctypes access to kickgrid's tokenizer API (io/tokenizer.h) for the
tokenizer tests, plus small writers of tokenizer files used as fixtures."""
import ctypes
import struct

from kgtest import last_error, lib

FMT_LLAMA2C, FMT_SPM_MODEL, FMT_HF_JSON, FMT_GGUF = 0, 1, 2, 3

_ready = False


def _api():
    global _ready
    L = lib()
    if not _ready:
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        L.kg_tokenizer_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(vp)]
        L.kg_tokenizer_load_memory.argtypes = [ctypes.c_int, ctypes.c_char_p, sz, ctypes.c_char_p, ctypes.POINTER(vp)]
        L.kg_tokenizer_load_gpt2_memory.argtypes = [ctypes.c_char_p, sz, ctypes.c_char_p, sz, ctypes.c_char_p,
                                                    ctypes.POINTER(vp)]
        L.kg_tokenizer_free.argtypes = [vp]
        L.kg_tokenizer_encode.argtypes = [vp, ctypes.c_char_p, sz, ctypes.c_int,
                                          ctypes.POINTER(ctypes.POINTER(ctypes.c_int32)), ctypes.POINTER(sz)]
        L.kg_tokenizer_decode.argtypes = [vp, ctypes.POINTER(ctypes.c_int32), sz, ctypes.POINTER(ctypes.c_void_p)]
        for f in ("vocab_size", "bos_id", "eos_id", "unk_id", "adds_bos"):
            getattr(L, "kg_tokenizer_" + f).argtypes = [vp]
        L.kg_tokenizer_describe.argtypes = [vp]
        L.kg_tokenizer_describe.restype = ctypes.c_char_p
        L.free.argtypes = [ctypes.c_void_p]
        _ready = True
    return L


class TokError(RuntimeError):
    def __init__(self, rc, msg):
        super().__init__(f"rc={rc}: {msg}")
        self.rc = rc
        self.msg = msg


class Tok:
    """A loaded kg_tokenizer: Tok(path) or Tok.from_memory(fmt, data)."""

    def __init__(self, path=None, handle=None):
        self.L = _api()
        self.h = handle
        if path is not None:
            h = ctypes.c_void_p()
            rc = self.L.kg_tokenizer_load(str(path).encode(), ctypes.byref(h))
            if rc != 0:
                raise TokError(rc, last_error())
            self.h = h

    @classmethod
    def from_memory(cls, fmt, data, name="mem"):
        L = _api()
        h = ctypes.c_void_p()
        rc = L.kg_tokenizer_load_memory(fmt, data, len(data), name.encode(), ctypes.byref(h))
        if rc != 0:
            raise TokError(rc, last_error())
        return cls(handle=h)

    @classmethod
    def from_gpt2(cls, vocab_json, merges_txt, name="mem"):
        L = _api()
        h = ctypes.c_void_p()
        rc = L.kg_tokenizer_load_gpt2_memory(vocab_json, len(vocab_json), merges_txt, len(merges_txt), name.encode(),
                                             ctypes.byref(h))
        if rc != 0:
            raise TokError(rc, last_error())
        return cls(handle=h)

    def __del__(self):
        if getattr(self, "h", None):
            self.L.kg_tokenizer_free(self.h)
            self.h = None

    def encode(self, text, bos=False):
        b = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        rc = self.L.kg_tokenizer_encode(self.h, b, len(b), int(bos), ctypes.byref(ids), ctypes.byref(n))
        if rc != 0:
            raise TokError(rc, last_error())
        out = ids[:n.value]
        self.L.free(ctypes.cast(ids, ctypes.c_void_p))
        return out

    def decode(self, ids):
        arr = (ctypes.c_int32 * len(ids))(*ids)
        p = ctypes.c_void_p()
        rc = self.L.kg_tokenizer_decode(self.h, arr, len(ids), ctypes.byref(p))
        if rc != 0:
            raise TokError(rc, last_error())
        out = ctypes.string_at(p.value)
        self.L.free(p)
        return out

    vocab_size = property(lambda s: s.L.kg_tokenizer_vocab_size(s.h))
    bos = property(lambda s: s.L.kg_tokenizer_bos_id(s.h))
    eos = property(lambda s: s.L.kg_tokenizer_eos_id(s.h))
    unk = property(lambda s: s.L.kg_tokenizer_unk_id(s.h))
    adds_bos = property(lambda s: bool(s.L.kg_tokenizer_adds_bos(s.h)))
    describe = property(lambda s: s.L.kg_tokenizer_describe(s.h).decode())


# ---- protobuf writer for SentencePiece ModelProto fixtures (field numbers
# from sentencepiece_model.proto) ----
def _varint(v):
    out = bytearray()
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(num, wire, payload):
    key = _varint(num << 3 | wire)
    if wire == 0:
        return key + _varint(payload)
    if wire == 5:
        return key + payload
    return key + _varint(len(payload)) + payload


def spm_model_proto(pieces, model_type=2, byte_fallback=False, add_dummy_prefix=True, remove_extra_ws=False,
                    escape_ws=True, unk_id=0, bos_id=1, eos_id=2):
    """pieces: list of (text, score, type) with SentencePiece type numbers."""
    out = bytearray()
    for text, score, typ in pieces:
        sp = _field(1, 2, text.encode("utf-8")) + _field(2, 5, struct.pack("<f", score)) + _field(3, 0, typ)
        out += _field(1, 2, sp)
    trainer = (_field(3, 0, model_type) + _field(35, 0, int(byte_fallback)) + _field(40, 0, unk_id) +
               _field(41, 0, bos_id) + _field(42, 0, eos_id))
    out += _field(2, 2, trainer)
    norm = (_field(1, 2, b"identity") + _field(3, 0, int(add_dummy_prefix)) + _field(4, 0, int(remove_extra_ws)) +
            _field(5, 0, int(escape_ws)))
    out += _field(3, 2, norm)
    return bytes(out)


def llama2c_bin(tokens):
    """tokens: list of (bytes, score); max_token_length header first."""
    out = bytearray(struct.pack("<i", max(len(t) for t, _ in tokens)))
    for t, s in tokens:
        out += struct.pack("<fi", s, len(t)) + t
    return bytes(out)


def bytelevel_map():
    """GPT-2's byte -> character table, written from its definition."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def read_llama2c_vocab(path):
    b = path.read_bytes()
    off, toks, scores = 4, [], []
    while off < len(b):
        score, n = struct.unpack_from("<fi", b, off)
        toks.append(b[off + 8:off + 8 + n])
        scores.append(score)
        off += 8 + n
    return toks, scores


def llama2c_encode(toks, scores, text):
    """llama2.c run.c encode(), transcribed from its definition: dummy prefix
    " ", UTF-8 characters looked up (unknown ones become byte tokens id+3),
    then repeatedly merge the adjacent pair whose concatenation has the
    highest score (the first such pair on ties)."""
    lookup = {t: i for i, t in enumerate(toks)}
    out = []
    if text:
        out.append(lookup[b" "])
    i = 0
    while i < len(text):
        j = i + 1
        while j < len(text) and (text[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        ch = text[i:j]
        if ch in lookup:
            out.append(lookup[ch])
        else:
            out.extend(c + 3 for c in ch)
        i = j
    while True:
        best, best_id, best_idx = -1e10, -1, -1
        for k in range(len(out) - 1):
            m = lookup.get(toks[out[k]] + toks[out[k + 1]], -1)
            if m != -1 and scores[m] > best:
                best, best_id, best_idx = scores[m], m, k
        if best_idx < 0:
            return out
        out[best_idx:best_idx + 2] = [best_id]
