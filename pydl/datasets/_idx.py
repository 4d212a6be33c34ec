"""The IDX file format of MNIST and Fashion-MNIST.

Header: two zero bytes, a dtype code, the number of dimensions n; then n big-endian
uint32 sizes; then prod(sizes) big-endian items. Files may be gzipped (recognized by
the gzip magic bytes, not the name). Every field is checked against the file's length,
so a damaged file raises ValueError naming it instead of giving a short array.
"""
import gzip
import zlib

import numpy as np

# dtype code -> big-endian NumPy dtype, as the format defines them.
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path):
    """The file's contents, gunzipped when it is gzipped."""
    with open(path, "rb") as file:
        raw = file.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{path}: damaged gzip data ({error})") from error


def parse_idx(data, name):
    """The array an IDX file's bytes hold, in native byte order."""
    if len(data) < 4:
        raise ValueError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: not an IDX file (magic number starts {data[:2].hex()}, "
                         "expected 0000)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{name}: unknown IDX dtype code 0x{code:02x} (expected one of "
                         f"{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})")
    if ndim == 0:
        raise ValueError(f"{name}: IDX header gives 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header ({len(data)} bytes, the {ndim} "
                         f"dimension sizes need {header})")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=object)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing data"
        raise ValueError(f"{name}: {problem}: shape {shape} of {dtype.newbyteorder('=')} needs "
                         f"{expected} bytes, the file has {len(data)}")
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def load_idx(path):
    """Reads an IDX file (raw or gzipped) into a NumPy array."""
    return parse_idx(read_bytes(path), str(path))
