"""Reading a kickgrid journal and checking it against its cube, independently
of kickgrid's own replay: the format is the one io/journal.h documents (one
JSON object per line, `crc32` = zlib.crc32 of the exact bytes of "record")."""
import json
import re
import zlib
from collections import Counter

import numpy as np

_LINE = re.compile(rb'^\{"crc32":"([0-9a-f]{8})","record":(.*)\}$')


def read(path):
    """Complete records in file order. A torn last line (no newline) is left
    out, as kickgrid's replay does; a complete line with a bad checksum or
    shape raises."""
    data = open(path, "rb").read()
    lines = data.split(b"\n")
    complete = lines[:-1]  # the part after the last newline is torn or empty
    records = []
    for no, line in enumerate(complete, 1):
        m = _LINE.match(line)
        if not m:
            raise AssertionError(f"{path}:{no}: not a journal line: {line[:120]!r}")
        crc, body = m.group(1).decode(), m.group(2)
        if f"{zlib.crc32(body):08x}" != crc:
            raise AssertionError(f"{path}:{no}: crc32 {crc} does not match the record")
        records.append(json.loads(body))
    return records


def done_counts(records):
    """How many `done` records each cell key has."""
    return Counter(r["cell"] for r in records if r["status"] == "done")


def _value(v):
    # Non-finite floats are the strings "nan", "inf", "-inf", which float() reads.
    return float(v["value"]) if v["type"] == "f64" else v["value"]


def latest_values(records):
    """{(var, index tuple): value} after applying every record in order."""
    out = {}
    for r in records:
        for v in r["values"]:
            out[(v["var"], tuple(v["index"]))] = (v["type"], _value(v))
    return out


def check_cube_holds(records, ds):
    """Every value the journal sets is in the cube (an xarray Dataset read
    from the cube file), equal as stored: the cube is the journal applied."""
    checked = 0
    for (var, index), (typ, value) in latest_values(records).items():
        assert var in ds, f"journal variable {var} is not in the cube"
        got = ds[var].values[index]
        if typ == "f64":
            if np.isnan(value):
                assert np.isnan(got), f"{var}{index}: cube {got}, journal nan"
            else:
                assert got == value, f"{var}{index}: cube {got!r}, journal {value!r}"
        elif typ == "i32":
            assert int(got) == value, f"{var}{index}: cube {got}, journal {value}"
        else:
            assert str(got) == value, f"{var}{index}: cube {got!r}, journal {value!r}"
        checked += 1
    return checked
