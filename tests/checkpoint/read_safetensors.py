#!/usr/bin/env python3
"""An independent safetensors reader (Python standard library only: struct, json).

Checks that files written by Keel's C++ writer (checkpoint/safetensors.cpp) follow the format as
documented at https://github.com/huggingface/safetensors, without sharing any code with it.

    read_safetensors.py FILE                  print metadata and each tensor's name, dtype, shape
    read_safetensors.py --check-sample FILE   also compare against the known sample values written
                                              by tests/checkpoint/test_python_sample.cpp (CTest)
Exit status 0 on success, 1 on a format or value error.
"""
import json
import math
import struct
import sys

# dtype -> (struct format char or None, element size)
DTYPES = {
    "F64": ("d", 8), "F32": ("f", 4), "F16": ("e", 2), "BF16": (None, 2),
    "I64": ("q", 8), "I32": ("i", 4), "I16": ("h", 2), "I8": ("b", 1),
    "U8": ("B", 1), "BOOL": ("?", 1),
}

# The known values of the C++ sample, in write order: name -> (dtype, shape, values).
SAMPLE = [
    ("model.weight", "F32", [2, 3], [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]),
    ("bf16", "BF16", [3], [1.0, -2.0, 0.5]),
    ("half", "F16", [2, 2], [1.0, -2.0, 0.5, 65504.0]),
    ("double", "F64", [2], [3.25, -1e300]),
    ("step", "I64", [], [123456789012]),
    ("i32", "I32", [3], [-1, 0, 2147483647]),
    ("i16", "I16", [2], [-32768, 7]),
    ("i8", "I8", [4], [-128, -1, 0, 127]),
    ("u8", "U8", [3], [0, 128, 255]),
    ("mask", "BOOL", [2, 2], [True, False, False, True]),
    ("empty", "F32", [0, 3], []),
]
SAMPLE_METADATA = {"format": "pt", "step": "7", "note": "h\u00e9llo"}


class FormatError(Exception):
    pass


def read(path):
    """Returns (metadata, [(name, dtype, shape, values)] in buffer order, header_len)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise FormatError(f"{path}: shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise FormatError(f"{path}: header length {n} larger than the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise FormatError(f"{path}: header is not an object")
    metadata = header.pop("__metadata__", {})
    if not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError(f"{path}: metadata values must be strings")
    buffer = data[8 + n:]
    entries = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    tensors, cursor = [], 0
    for name, entry in entries:
        if set(entry) != {"dtype", "shape", "data_offsets"}:
            raise FormatError(f"{name}: keys {sorted(entry)}")
        dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise FormatError(f"{name}: unknown dtype {dtype}")
        fmt, size = DTYPES[dtype]
        count = math.prod(shape)
        if begin != cursor or end - begin != count * size or end > len(buffer):
            raise FormatError(f"{name}: bad data_offsets {[begin, end]} (cursor {cursor}, {count} x {size} bytes)")
        raw = buffer[begin:end]
        if fmt is None:  # BF16: the top half of an F32
            values = [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
        else:
            values = list(struct.unpack(f"<{count}{fmt}", raw))
        tensors.append((name, dtype, shape, values))
        cursor = end
    if cursor != len(buffer):
        raise FormatError(f"{path}: buffer bytes [{cursor}, {len(buffer)}) not covered by any tensor")
    return metadata, tensors, n


def check_sample(path):
    metadata, tensors, n = read(path)
    problems = []
    if (8 + n) % 8 != 0:
        problems.append(f"header length {n}: buffer does not start 8-byte aligned")
    if metadata != SAMPLE_METADATA:
        problems.append(f"metadata {metadata!r} != {SAMPLE_METADATA!r}")
    if [t[0] for t in tensors] != [s[0] for s in SAMPLE]:
        problems.append(f"names in buffer order {[t[0] for t in tensors]} != {[s[0] for s in SAMPLE]}")
    got = {t[0]: t for t in tensors}
    for name, dtype, shape, values in SAMPLE:
        if name not in got:
            continue
        _, gdtype, gshape, gvalues = got[name]
        if (gdtype, gshape, gvalues) != (dtype, shape, values):
            problems.append(f"{name}: got {gdtype} {gshape} {gvalues}, want {dtype} {shape} {values}")
    return problems


def main(argv):
    check = "--check-sample" in argv
    paths = [a for a in argv if a != "--check-sample"]
    if len(paths) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    path = paths[0]
    try:
        metadata, tensors, n = read(path)
        print(f"{path}: header {n} bytes, {len(tensors)} tensors, metadata {json.dumps(metadata, ensure_ascii=False)}")
        for name, dtype, shape, values in tensors:
            print(f"  {name}: {dtype} {shape}")
        problems = check_sample(path) if check else []
    except (FormatError, ValueError, KeyError, TypeError, struct.error, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for p in problems:
        print(f"MISMATCH {p}", file=sys.stderr)
    if check and not problems:
        print("sample OK: names, dtypes, shapes, values and metadata match")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
