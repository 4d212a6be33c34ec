"""pydl.save / pydl.load: round trips, atomic writes, damaged files, and training that
resumes from a checkpoint exactly where it stopped."""
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import pydl
from pydl import nn, serialization
from pydl.data import DataLoader, TensorDataset


def assert_same(a, b):
    """Deep equality that also checks types and dtypes."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, pydl.Tensor):
        assert a.dtype == b.dtype and a.requires_grad == b.requires_grad
        np.testing.assert_array_equal(a.numpy() if not a.requires_grad else a.detach().numpy(),
                                      b.numpy() if not b.requires_grad else b.detach().numpy())
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def test_round_trip_of_nested_structure(tmp_path):
    rng = np.random.default_rng(1)
    obj = {
        "model": {"w": pydl.tensor(rng.standard_normal((3, 4)).astype(np.float32)),
                  "b": pydl.tensor(rng.standard_normal(4), dtype="float64", requires_grad=True)},
        "arrays": [rng.integers(0, 9, (2, 3)), rng.random(5) < 0.5, np.empty((0, 2), np.float32)],
        "state": {0: {"step": 7, "exp_avg": rng.standard_normal(3)}, 1: {}},
        "groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "amsgrad": False, "name": None}],
        "epoch": 3, "big": 2**100, "inf": float("inf"), "nan": float("nan"), "text": "é\n",
        "np_scalar": np.float32(2.5), 7: "int key", 2.5: "float key", None: "None key",
        "rng": pydl.get_rng_state(),
    }
    path = tmp_path / "ckpt.pydl"
    pydl.save(obj, path)
    assert_same(obj, pydl.load(path))
    assert_same(obj, pydl.load(str(path)))


def test_file_is_a_zip_of_npy_and_json_without_pickle(tmp_path):
    path = tmp_path / "c.pydl"
    pydl.save({"a": np.arange(3), "t": pydl.ones(2)}, path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["arrays/0.npy", "arrays/1.npy", "structure.json"]


def test_unsaveable_values_are_refused_with_their_location(tmp_path):
    with pytest.raises(TypeError, match=r"obj\['x'\]\[1\] is a object"):
        pydl.save({"x": [1, object()]}, tmp_path / "a")
    with pytest.raises(TypeError, match="Python objects"):
        pydl.save({"x": np.array([{}, 1], dtype=object)}, tmp_path / "b")
    with pytest.raises(TypeError, match="key of type tuple"):
        pydl.save({(1, 2): 3}, tmp_path / "c")
    assert os.listdir(tmp_path) == []  # no temporary files left behind


def test_failed_write_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pydl"
    old = {"w": np.arange(6.0), "epoch": 1}
    pydl.save(old, path)
    calls = []
    real_write = serialization._write_array

    def failing_write(file, array):
        calls.append(1)
        if len(calls) == 2:  # the first array is already in the new file
            raise OSError("disk full")
        real_write(file, array)

    monkeypatch.setattr(serialization, "_write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        pydl.save({"w": np.zeros(6), "v": np.ones(3), "epoch": 2}, path)
    assert len(calls) == 2
    assert_same(pydl.load(path), old)
    assert os.listdir(tmp_path) == ["ckpt.pydl"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage", "no_structure",
                                    "bad_version", "bad_node", "pickle_npy"])
def test_damaged_files_raise_value_error_naming_the_path(tmp_path, damage):
    path = tmp_path / "ckpt.pydl"
    pydl.save({"w": np.random.default_rng(0).standard_normal(1000), "n": 3}, path)
    data = path.read_bytes()
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":  # inside the array's bytes: caught by the zip's CRC
        data = data[:3000] + bytes([data[3000] ^ 0xFF]) + data[3001:]
    elif damage == "empty":
        data = b""
    elif damage == "garbage":
        data = os.urandom(500)
    if damage in ("no_structure", "bad_version", "bad_node", "pickle_npy"):
        with zipfile.ZipFile(path, "w") as archive:
            if damage == "bad_version":
                archive.writestr("structure.json", '{"format": "pydl.checkpoint", "version": 99}')
            elif damage == "bad_node":
                archive.writestr("structure.json",
                                 '{"format": "pydl.checkpoint", "version": 1, "root": {"eval": 1}}')
            elif damage == "pickle_npy":  # an object array needs pickle: refused
                archive.writestr("structure.json", '{"format": "pydl.checkpoint", "version": 1, '
                                                   '"root": {"ndarray": "arrays/0.npy"}}')
                with archive.open("arrays/0.npy", "w") as member:
                    np.save(member, np.array([None, 1], dtype=object), allow_pickle=True)
            else:
                archive.writestr("other.txt", "x")
    else:
        path.write_bytes(data)
    with pytest.raises(ValueError, match=str(path)):
        pydl.load(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        pydl.load(tmp_path / "nope")


def test_rng_state_round_trip():
    pydl.manual_seed(11)
    pydl.randn(3)
    state = pydl.get_rng_state()
    expected = (pydl.randn(4).numpy().copy(), pydl._random.philox_next())
    pydl.manual_seed(99)
    pydl.set_rng_state(state)
    got = (pydl.randn(4).numpy(), pydl._random.philox_next())
    np.testing.assert_array_equal(expected[0], got[0])
    assert expected[1] == got[1]
    with pytest.raises(ValueError, match="bit generator"):
        pydl.set_rng_state({**state, "numpy": {**state["numpy"], "bit_generator": "os.system"}})
    with pytest.raises(ValueError, match="get_rng_state"):
        pydl.set_rng_state({"numpy": 1})


# ---- resuming training ----------------------------------------------------------------

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(6, 16)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(self.drop(self.hidden(x).relu()))


def make_run(seed):
    pydl.manual_seed(seed)
    model = Net()
    optimizer = pydl.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    data = TensorDataset(rng.standard_normal((50, 6)).astype(np.float32), rng.integers(0, 3, 50))
    return model, optimizer, DataLoader(data, batch_size=8, shuffle=True)


def train_epoch(model, optimizer, loader):
    losses = []
    for x, y in loader:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_training_resumed_from_a_checkpoint_continues_bitwise(tmp_path):
    model, optimizer, loader = make_run(seed=4)
    uninterrupted = [train_epoch(model, optimizer, loader) for _ in range(4)]

    model, optimizer, loader = make_run(seed=4)
    for epoch in range(2):
        assert train_epoch(model, optimizer, loader) == uninterrupted[epoch]
    path = tmp_path / "ckpt.pydl"
    pydl.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "rng": pydl.get_rng_state(), "epoch": 2}, path)
    # A fresh process would start with other weights and another random state.
    model, optimizer, loader = make_run(seed=123)
    checkpoint = pydl.load(path)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    pydl.set_rng_state(checkpoint["rng"])
    resumed = [train_epoch(model, optimizer, loader) for _ in range(checkpoint["epoch"], 4)]
    assert resumed == uninterrupted[2:]  # bitwise: the same floats, loss for loss


# ---- bounds on what reading allocates, temporaries, permissions ---------------------

def _zip_with(path, members, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compress) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _structure(root):
    return json.dumps({"format": "pydl.checkpoint", "version": 1, "root": root})


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_reading_allocates_no_more_than_the_file_holds(tmp_path):
    path = tmp_path / "bad.pydl"
    zeros = _npy_bytes(np.zeros(1 << 20, np.float32))  # 4 MiB of zeros deflate to ~4 KiB
    _zip_with(path, {"structure.json": _structure({"ndarray": "arrays/0.npy"}),
                     "arrays/0.npy": zeros}, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 100_000
    with pytest.raises(ValueError, match="compressed"):
        pydl.load(path)
    # One member named many times would be read (and allocated) once per name.
    _zip_with(path, {"structure.json": _structure({"list": [{"ndarray": "arrays/0.npy"}] * 250}),
                     "arrays/0.npy": _npy_bytes(np.ones(16, np.float32))})
    with pytest.raises(ValueError, match="named twice"):
        pydl.load(path)
    # A header that declares 10**12 floats over 64 bytes of data: refused before allocating.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10 ** 12,)})
    _zip_with(path, {"structure.json": _structure({"ndarray": "arrays/0.npy"}),
                     "arrays/0.npy": header.getvalue() + bytes(64)})
    with pytest.raises(ValueError, match=r"declares \(1000000000000,\)"):
        pydl.load(path)


def test_saved_files_honour_the_umask(tmp_path):
    for umask, mode in [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)]:
        before = os.umask(umask)
        try:
            pydl.save({"x": np.ones(3)}, tmp_path / f"u{umask:o}.pydl")
        finally:
            os.umask(before)
        assert os.stat(tmp_path / f"u{umask:o}.pydl").st_mode & 0o777 == mode


def test_temporaries_of_dead_writers_are_removed_by_the_next_save_and_load(tmp_path):
    path = tmp_path / "ckpt.pydl"
    pydl.save({"x": np.arange(3)}, path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    alive = os.getppid()  # a running process other than this one
    for when in ("load", "save"):
        stale = tmp_path / f".ckpt.pydl.pydl-save-{dead}-0000abcd.tmp"
        running = tmp_path / f".ckpt.pydl.pydl-save-{alive}-0000abcd.tmp"
        other = tmp_path / f".other.pydl.pydl-save-{dead}-0000abcd.tmp"
        for f in (stale, running, other):
            f.write_bytes(b"partial")
        if when == "load":
            pydl.load(path)
        else:
            pydl.save({"x": np.arange(4)}, path)
        assert not stale.exists(), when
        assert running.exists() and other.exists(), when  # a live writer's, another target's
        running.unlink()
        other.unlink()


def _save_forever(path, states):
    """The child of the kill test: saves the states in turn until it is killed."""
    for i in itertools.count():
        pydl.save(states[i % 2], path)
        with open(f"{path}.saved", "w") as marker:  # the last state known to be complete
            marker.write(str(i % 2))


def test_killed_writer_leaves_the_old_or_new_state_and_no_stray_files(tmp_path):
    """SIGKILL a saving process at random points 30 times: the target always loads as
    one of the states it was given, and after the load nothing else is left."""
    rng = np.random.default_rng(12)
    states = [{"w": rng.standard_normal(200_000).astype(np.float32), "tag": k}
              for k in range(2)]
    path = str(tmp_path / "ckpt.pydl")
    pydl.save(states[1], path)
    mid_save = 0
    for _ in range(30):
        pid = os.fork()
        if pid == 0:
            try:
                _save_forever(path, states)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.002, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        mid_save += any(".pydl-save-" in name for name in os.listdir(tmp_path))
        loaded = pydl.load(path)
        tag = loaded["tag"]
        np.testing.assert_array_equal(loaded["w"], states[tag]["w"])
        assert sorted(os.listdir(tmp_path)) in (["ckpt.pydl"], ["ckpt.pydl", "ckpt.pydl.saved"])
    assert mid_save >= 5, mid_save  # the kills did land inside saves, not only between them
