"""pydl.save / pydl.load: checkpoints in a format that never runs code when read.

A checkpoint is a zip archive (stored, not compressed) of
  structure.json   the object's shape: dicts (with their key types), lists, tuples,
                   scalars, and for each array leaf the name of its member below
  arrays/<n>.npy   one NumPy .npy file per tensor or array, written and read with
                   allow_pickle=False (so object arrays are refused both ways)
Reading parses JSON and .npy headers only, never pickle, and allocates at most about
the file's size: members must be stored (pydl.save never compresses, so no member can
inflate), each array member is read once, and its .npy header must declare exactly the
bytes the member holds.

Writing goes to a temporary file beside the target, named .<target>.pydl-save-<pid>-
<random>.tmp and created with the umask's permissions; it is flushed and fsync'ed, then
os.replace'd over the target (and the directory fsync'ed): a crash at any point leaves
either the old file or the new one, never a mix. A writer killed before the rename
leaves its temporary file; the next pydl.save or pydl.load of that target removes the
temporaries of writers that are no longer running.

pydl.save_safetensors / pydl.load_safetensors read and write the safetensors format
(through the safetensors package) for weights shared with PyTorch and other tools.
"""
import json
import math
import os
import secrets
import zipfile

import numpy as np

from pydl._device import CPU, to_device
from pydl.tensor import Tensor

FORMAT = "pydl.checkpoint"
VERSION = 1
_STRUCTURE = "structure.json"
_KEY_TYPES = (str, int, float, bool, type(None))


class _Writer:
    """Turns an object into a JSON-able node tree, collecting its arrays on the way."""

    def __init__(self):
        self.arrays = []

    def encode(self, value, where):
        if value is None or isinstance(value, (bool, str)):
            return {"value": value}
        if isinstance(value, int):
            return {"int": str(value)}  # a string: exact for any size, whatever reads the JSON
        if isinstance(value, float):
            return {"float": repr(value) if not math.isfinite(value) else value}
        if isinstance(value, Tensor):
            data = value.data if isinstance(value.data, np.ndarray) else value.cpu().data
            return {"tensor": self._array(data, where), "requires_grad": value.requires_grad}
        if isinstance(value, np.ndarray):
            return {"ndarray": self._array(value, where)}
        if hasattr(value, "__cuda_array_interface__"):  # a device array (optimizer state)
            return {"ndarray": self._array(to_device(value, CPU), where)}
        if isinstance(value, np.generic):
            return {"scalar": self._array(np.asarray(value), where)}
        if isinstance(value, dict):
            items = []
            for key, item in value.items():
                if not isinstance(key, _KEY_TYPES):
                    raise TypeError(f"pydl.save: {where} has a key of type {type(key).__name__}; "
                                    "keys must be str, int, float, bool or None")
                items.append([self.encode(key, where), self.encode(item, f"{where}[{key!r}]")])
            return {"dict": items}
        if isinstance(value, (list, tuple)):
            kind = "list" if isinstance(value, list) else "tuple"
            return {kind: [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
        raise TypeError(f"pydl.save: {where} is a {type(value).__name__}; a checkpoint holds "
                        "dicts, lists, tuples, tensors, NumPy arrays and scalars, str, bool "
                        "and None")

    def _array(self, array, where):
        if array.dtype.hasobject:
            raise TypeError(f"pydl.save: {where} is an array of Python objects (dtype "
                            f"{array.dtype}), which cannot be saved without pickle")
        self.arrays.append(array)
        return f"arrays/{len(self.arrays) - 1}.npy"


def _write_array(file, array):
    np.lib.format.write_array(file, np.asarray(array), allow_pickle=False)


def save(obj, path):
    """Writes obj (nested dicts/lists/tuples of tensors, NumPy arrays, ints, floats,
    strings, bools and None; e.g. {'model': model.state_dict(), 'optimizer':
    opt.state_dict(), 'epoch': 3, 'rng': pydl.get_rng_state()}) to path, atomically.

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "model.pydl")
    ...     pydl.save({"weight": pydl.ones(2), "epoch": 3}, path)
    ...     print(pydl.load(path))
    {'weight': tensor([1., 1.]), 'epoch': 3}
    """
    writer = _Writer()
    structure = {"format": FORMAT, "version": VERSION, "root": writer.encode(obj, "obj")}

    def write(file):
        with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(_STRUCTURE, json.dumps(structure))
            for i, array in enumerate(writer.arrays):
                with archive.open(f"arrays/{i}.npy", "w", force_zip64=True) as member:
                    _write_array(member, array)
    _write_atomically(path, write)


def _write_atomically(path, write):
    """Calls write(file) on a temporary file beside path, then replaces path with it."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(path)
    temporary = os.path.join(directory, f"{_temporary_prefix(path)}{os.getpid()}-"
                                        f"{secrets.token_hex(4)}.tmp")
    # 0o666 less the umask, as open() gives any new file (mkstemp's would be 0600).
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_directory(directory)


def _temporary_prefix(path):
    return f".{os.path.basename(path)}.pydl-save-"


def _remove_stale_temporaries(path):
    """Removes the temporary files beside `path` left by savers that were killed: those
    whose writer process no longer exists (this process's own are never touched, since
    another thread may be saving)."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temporary_prefix(path)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_exists(int(pid)):
            continue
        try:
            os.remove(os.path.join(directory, name))
        except OSError:
            pass  # another cleaner got there first, or the directory is read-only


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's), or we cannot tell: keep its file
    return True


def _fsync_directory(directory):
    """Makes the rename itself durable (POSIX; Windows has no directory handles)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The .npy versions np.lib.format.write_array writes for plain arrays.
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}


class _Reader:
    """Rebuilds the object from the node tree, reading array members on demand."""

    def __init__(self, archive):
        self.archive = archive
        self.members = {info.filename: info for info in archive.infolist()}
        self.read_already = set()

    def decode(self, node):
        if not isinstance(node, dict) or len(node) not in (1, 2):
            raise ValueError(f"malformed node {node!r:.80}")
        tag = next(iter(node))
        body = node[tag]
        if tag == "value" and (body is None or isinstance(body, (bool, str))):
            return body
        if tag == "int" and isinstance(body, str):
            return int(body)
        if tag == "float" and isinstance(body, (int, float, str)) and not isinstance(body, bool):
            return float(body)
        if tag == "tensor":
            return Tensor(self._array(body), requires_grad=bool(node.get("requires_grad", False)))
        if tag == "ndarray":
            return self._array(body)
        if tag == "scalar":
            return self._array(body)[()]
        if tag in ("list", "tuple") and isinstance(body, list):
            items = [self.decode(item) for item in body]
            return items if tag == "list" else tuple(items)
        if tag == "dict" and isinstance(body, list):
            result = {}
            for pair in body:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise ValueError(f"malformed dict entry {pair!r:.80}")
                key = self.decode(pair[0])
                if not isinstance(key, _KEY_TYPES):
                    raise ValueError(f"dict key of type {type(key).__name__}")
                result[key] = self.decode(pair[1])
            return result
        raise ValueError(f"unknown node {node!r:.80}")

    def _array(self, name):
        if not isinstance(name, str) or name not in self.members:
            raise ValueError(f"missing array member {name!r:.80}")
        if name in self.read_already:  # pydl.save names each member once
            raise ValueError(f"array member {name} is named twice")
        self.read_already.add(name)
        info = self.members[name]
        with self.archive.open(info) as member:
            # The header's shape is checked against the member's size before any array
            # is allocated, so memory stays within the file's size.
            version = np.lib.format.read_magic(member)
            if version not in _NPY_HEADER_READERS:
                raise ValueError(f"{name}: .npy format version {version}")
            shape, fortran, dtype = _NPY_HEADER_READERS[version](member)
            declared = math.prod(shape) * dtype.itemsize
            if dtype.hasobject or info.file_size - member.tell() != declared:
                raise ValueError(f"{name}: its .npy header declares {shape} of {dtype} "
                                 f"({declared} bytes) but the member holds "
                                 f"{info.file_size - member.tell()} bytes of data")
            array = np.empty(shape[::-1] if fortran else shape, dtype)
            view = memoryview(array.reshape(-1).view(np.uint8))
            done = 0
            while done < declared:
                got = member.readinto(view[done:])
                if not got:
                    raise ValueError(f"{name} is truncated")
                done += got
        return array.T if fortran else array


def load(path):
    """Reads a checkpoint written by pydl.save: tensors come back as pydl Tensors (on the
    CPU), arrays as NumPy arrays. A truncated or corrupted file raises ValueError naming
    the path; no code in the file is ever run.

    >>> import os, tempfile
    >>> model = nn.Linear(2, 1)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     pydl.save(model.state_dict(), os.path.join(folder, "ckpt.pydl"))
    ...     state = pydl.load(os.path.join(folder, "ckpt.pydl"))
    >>> model.load_state_dict(state)
    IncompatibleKeys(missing_keys=[], unexpected_keys=[])
    """
    path = os.fspath(path)
    _remove_stale_temporaries(path)
    with open(path, "rb") as file:  # a missing file raises FileNotFoundError as usual
        try:
            with zipfile.ZipFile(file) as archive:
                length = os.fstat(file.fileno()).st_size
                for info in archive.infolist():
                    if info.compress_type != zipfile.ZIP_STORED:
                        raise ValueError(f"member {info.filename} is compressed; pydl.save "
                                         "stores members uncompressed")
                    if info.file_size != info.compress_size or info.file_size > length:
                        raise ValueError(f"member {info.filename} claims {info.file_size} "
                                         f"bytes; the file has {length}")
                structure = json.loads(archive.read(_STRUCTURE).decode("utf-8"))
                if not isinstance(structure, dict) or structure.get("format") != FORMAT:
                    raise ValueError("not a pydl checkpoint (no format tag)")
                if structure.get("version") != VERSION:
                    raise ValueError(f"checkpoint format version {structure.get('version')!r}; "
                                     f"this pydl reads version {VERSION}")
                return _Reader(archive).decode(structure.get("root"))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, ValueError, EOFError,
                UnicodeDecodeError, RecursionError, OSError) as error:
            raise ValueError(f"pydl.load: {path} is not a readable pydl checkpoint "
                             f"(truncated or corrupted?): {error}") from error


# ---- safetensors --------------------------------------------------------------------

def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as error:
        raise ImportError("save_safetensors / load_safetensors need the safetensors package: "
                          "pip install 'pydl[safetensors]'") from error
    return safetensors.numpy


def save_safetensors(state_dict, path, metadata=None):
    """Writes a flat name -> tensor (or array) mapping, e.g. model.state_dict(), as a
    safetensors file (readable by safetensors.torch.load_file and other tools),
    atomically. metadata: an optional str -> str mapping stored in the header.

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "model.safetensors")
    ...     pydl.save_safetensors(pydl.nn.Linear(3, 2).state_dict(), path)
    ...     print(sorted((k, v.shape) for k, v in pydl.load_safetensors(path).items()))
    [('bias', (2,)), ('weight', (2, 3))]
    """
    st = _safetensors_numpy()
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"save_safetensors: keys must be strings, got {name!r}")
        array = value.detach().data if isinstance(value, Tensor) else np.asarray(value)
        arrays[name] = np.require(to_device(array, CPU), requirements="C")
    data = st.save(arrays, metadata=metadata)
    _write_atomically(path, lambda file: file.write(data))


def load_safetensors(path, device="cpu"):
    """name -> Tensor from a safetensors file (e.g. one written by
    safetensors.torch.save_file), ready for model.load_state_dict. Reading parses the
    JSON header and copies the buffers; nothing is executed. See save_safetensors:

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "w.safetensors")
    ...     pydl.save_safetensors({"w": pydl.ones(2, 2)}, path)
    ...     pydl.load_safetensors(path)["w"].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    tensors = _safetensors_numpy().load_file(os.fspath(path))
    return {name: Tensor(array).to(device) for name, array in tensors.items()}
