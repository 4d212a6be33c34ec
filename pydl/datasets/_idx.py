"""The IDX file format of MNIST and Fashion-MNIST.

Header: two zero bytes, a dtype code, the number of dimensions n; then n big-endian
uint32 sizes; then prod(sizes) big-endian items. Files may be gzipped (recognized by
the gzip magic bytes, not the name). Every field is checked against the file's length,
so a damaged file raises ValueError naming it instead of giving a short array. A
gzipped file is inflated as far as its header first, and then only up to the size the
header declares, which must be one that deflate could have packed into the file
(at most 1032 bytes per compressed byte): memory stays within the declared shape and
about 1032 times the file's size.
"""
import gzip
import io
import zlib

import numpy as np

# dtype code -> big-endian NumPy dtype, as the format defines them.
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


_DEFLATE_MAX_RATIO = 1032  # deflate's largest expansion: 258 bytes per 2-bit code


def read_bytes(path):
    """The file's contents, gunzipped when it is gzipped (no further than the IDX header
    it holds declares, and no further than deflate could expand the file)."""
    with open(path, "rb") as file:
        raw = file.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    limit = _DEFLATE_MAX_RATIO * len(raw) + 1024
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as inflated:
            head = inflated.read(4)
            if len(head) == 4 and head[:2] == b"\0\0":
                head += inflated.read(4 * head[3])
                declared = _declared_size(head)
                if declared is not None and declared > limit:
                    raise ValueError(f"{path}: the IDX header declares {declared} bytes, more "
                                     f"than {len(raw)} bytes of gzip data can hold")
                limit = declared if declared is not None else limit
            # One byte past the declared size, so that trailing data is still noticed.
            return head + inflated.read(max(limit - len(head), 0) + 1)
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{path}: damaged gzip data ({error})") from error


def _declared_size(head):
    """The file size an IDX header declares, or None when `head` is no complete header
    (parse_idx then names what is wrong)."""
    if len(head) < 4 or head[2] not in IDX_DTYPES or len(head) < 4 + 4 * head[3]:
        return None
    shape = np.frombuffer(head, ">u4", count=head[3], offset=4)
    return 4 + 4 * head[3] + int(np.prod(shape, dtype=object)) * IDX_DTYPES[head[2]].itemsize


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
