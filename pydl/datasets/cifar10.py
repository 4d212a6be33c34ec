"""CIFAR-10: 50000 training and 10000 test colour images, 32 x 32, ten classes.

The "python version" stores each batch as a pickle of a dict holding a NumPy array.
Unpickling can run arbitrary code, so the batches are read with an unpickler that
resolves only the handful of globals a NumPy array's pickle names, and resolves them to
inert stand-ins that merely record the array's shape, dtype and bytes; the array is
then built with np.frombuffer from a plain numeric dtype. Nothing else is callable.
"""
import functools
import io
import os
import pickle
import pickletools
import tarfile

import numpy as np

from pydl.datasets import _files

ARCHIVE = "cifar-10-python.tar.gz"
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
# Plain numeric dtypes an array in a batch may have (a pickled dtype names one of these).
_DTYPE_CODES = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"}


class _PickledDtype:
    """Stands for numpy.dtype(code, align, copy); __setstate__ records the byte order."""

    def __init__(self, code, align=0, copy=0):
        code = code.decode("latin1") if isinstance(code, bytes) else code
        if not isinstance(code, str) or code not in _DTYPE_CODES:
            raise pickle.UnpicklingError(f"dtype {code!r} is not a plain numeric dtype")
        self.code, self.byteorder = code, "|"

    def __setstate__(self, state):
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        order = order.decode("latin1") if isinstance(order, bytes) else order
        if order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"dtype byte order {order!r}")
        self.byteorder = order

    def numpy(self):
        return np.dtype((self.byteorder if self.byteorder != "|" else "") + self.code)


class _PickledArray:
    """Stands for the array _reconstruct(numpy.ndarray, ...) starts; __setstate__ takes
    (version, shape, dtype, fortran_order, raw bytes) and builds it with np.frombuffer."""
    subtype = None  # the stand-in for numpy.ndarray, set per unpickler

    def __init__(self, subtype, shape, typecode):
        if subtype is not self.subtype:
            raise pickle.UnpicklingError("array subtype is not numpy.ndarray")
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed array state")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, _PickledDtype) or not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError("array state lacks a dtype or raw bytes")
        if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise pickle.UnpicklingError(f"array shape {shape!r:.80}")
        dtype = dtype.numpy()
        if len(raw) != int(np.prod(shape, dtype=object)) * dtype.itemsize:
            raise pickle.UnpicklingError(f"array of shape {shape} and dtype {dtype} does not fit "
                                         f"{len(raw)} bytes")
        array = np.frombuffer(bytes(raw), dtype)
        self.array = array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _latin1_encode(text, encoding="latin1"):
    """Stands for _codecs.encode, with which Python 3 pickles bytes at protocol 2."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin1 text")
    return text.encode("latin1")


class _BatchUnpickler(pickle.Unpickler):
    """Resolves only the globals of a NumPy array's pickle, to stand-ins made fresh for
    each load (so a hostile pickle's BUILD opcodes cannot alter shared objects)."""

    def __init__(self, file):
        super().__init__(file, encoding="bytes")
        ndarray = type("ndarray", (), {})
        array = type("PickledArray", (_PickledArray,), {"subtype": ndarray})
        self.allowed = {("numpy.core.multiarray", "_reconstruct"): array,
                        ("numpy._core.multiarray", "_reconstruct"): array,
                        ("numpy", "ndarray"): ndarray,
                        ("numpy", "dtype"): type("PickledDtype", (_PickledDtype,), {}),
                        ("_codecs", "encode"): functools.partial(_latin1_encode)}

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: a CIFAR "
                                         "batch holds only a dict, lists and NumPy arrays"
                                         ) from None


class _Resolver:
    """Replaces the stand-in arrays in an unpickled object with the NumPy arrays.

    A pickle can name one memoized object many times, so a few hundred bytes can stand
    for a tree of 2**40 leaves (a tuple of two references to a tuple of two ...). Each
    object is resolved once (time linear in the pickle), and the tree it stands for may
    hold at most `budget` nodes, counted with their repetitions, so nothing later (such
    as np.asarray on the labels) can expand it either."""

    def __init__(self, budget):
        self.budget = budget
        self.done = {}  # id -> (resolved value, nodes of the tree it stands for)

    def __call__(self, value):
        key = id(value)
        if key in self.done:
            return self.done[key][0]
        if isinstance(value, _PickledArray):
            if not isinstance(value.array, np.ndarray):
                raise pickle.UnpicklingError("array without state")
            result, nodes = value.array, 1
        elif isinstance(value, dict):
            result = {(k.decode("latin1") if isinstance(k, bytes) else k): self(v)
                      for k, v in value.items()}
            nodes = 1 + sum(self.nodes(v) for v in value.values())
        elif isinstance(value, (list, tuple)):
            result = type(value)(self(v) for v in value)
            nodes = 1 + sum(self.nodes(v) for v in value)
        else:
            result, nodes = value, 1
        if nodes > self.budget:
            raise pickle.UnpicklingError(f"the pickle stands for a tree of more than "
                                         f"{self.budget} objects (memo references repeated)")
        self.done[key] = (result, nodes)
        return result

    def nodes(self, value):
        return self.done[id(value)][1] if id(value) in self.done else 1


def _check_memo_indices(data):
    """Refuses PUT opcodes whose memo index exceeds the pickle's length: the C unpickler
    sizes its memo table by the largest index, so one LONG_BINPUT 2**32-1 in a few
    hundred bytes would make it allocate 32 GiB. pickle numbers entries from 0 up, one
    per opcode at most, so a real batch's indices stay below its byte count."""
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= int(arg) < len(data):
            raise pickle.UnpicklingError(f"memo index {arg} in a pickle of {len(data)} bytes")


def read_batch(data, name):
    """(images (N, 32, 32, 3) uint8, labels (N,) uint8) from one batch file's bytes."""
    try:
        _check_memo_indices(data)
        # Each object of the tree takes at least one byte of pickle unless memoized.
        batch = _Resolver(budget=len(data) + 64)(_BatchUnpickler(io.BytesIO(data)).load())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, RecursionError) as error:
        raise ValueError(f"{name}: not a readable CIFAR-10 batch: {error}") from error
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise ValueError(f"{name}: a CIFAR-10 batch is a dict with 'data' and 'labels'")
    images, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{name}: 'data' must be a uint8 array of shape (N, 3072), got "
                         f"{getattr(images, 'dtype', type(images).__name__)} "
                         f"{getattr(images, 'shape', '')}")
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu" or \
            (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"{name}: 'labels' must be {len(images)} integers in 0..9, got "
                         f"{labels.dtype} {labels.shape}")
    # Stored as (N, channel, row, column) planes; Keras returns channels last.
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels.astype(np.uint8)


def _batch_reader(path):
    """A function name -> bytes reading batches from a directory or the tar.gz."""
    if os.path.isfile(path):
        try:
            archive = tarfile.open(path, "r:*")
        except (tarfile.TarError, OSError) as error:
            raise ValueError(f"{path}: not a readable CIFAR-10 archive: {error}") from error

        def read(name):
            try:
                member = archive.extractfile(f"{BATCH_DIR}/{name}")
                return member.read()
            except (KeyError, AttributeError, tarfile.TarError, EOFError, OSError) as error:
                raise ValueError(f"{path}: cannot read {BATCH_DIR}/{name}: {error}") from error
        return read, archive.close
    directory = path if os.path.isfile(os.path.join(path, TEST_BATCH)) else \
        os.path.join(path, BATCH_DIR)

    def read(name):
        full = os.path.join(directory, name)
        if not os.path.isfile(full):
            raise _files.DatasetNotFoundError(f"cifar10: {full} is missing")
        with open(full, "rb") as file:
            return file.read()
    return read, lambda: None


def _find_source(path):
    if path is not None:
        return os.fspath(path)
    cache = _files.cache_dir("cifar10")
    for candidate in (os.path.join(cache, BATCH_DIR), cache):
        if os.path.isfile(os.path.join(candidate, TEST_BATCH)):
            return candidate
    return _files.locate("cifar10", {ARCHIVE: SHA256}, mirrors=MIRRORS)[0]


def load_data(path=None):
    """((x_train, y_train), (x_test, y_test)): images (N, 32, 32, 3) uint8 channels-last,
    labels (N, 1) uint8, as Keras returns them. path: the cifar-10-python.tar.gz archive,
    or a directory holding the batch files (or their cifar-10-batches-py folder);
    otherwise the cache directory, then a download into it."""
    read, close = _batch_reader(_find_source(path))
    try:
        train = [read_batch(read(name), name) for name in TRAIN_BATCHES]
        x_test, y_test = read_batch(read(TEST_BATCH), TEST_BATCH)
    finally:
        close()
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train[:, None]), (x_test, y_test[:, None])
