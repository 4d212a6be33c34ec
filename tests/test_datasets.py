"""pydl.datasets: the IDX parser, MNIST-style loading and search order, downloads with
checksums, the CIFAR-10 batch reader and its refusal of hostile pickles, and the
optional scikit-learn / mnist1d loaders."""
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import time

import numpy as np
import pytest

from pydl.datasets import DatasetNotFoundError, _files, cifar10, fashion_mnist, mnist
from pydl.datasets._idx import IDX_DTYPES, load_idx, parse_idx
from pydl.datasets._mnist_like import FILENAMES


def idx_bytes(array, code=None, shape=None):
    """An IDX file's bytes for array (the dtype code and header shape may be forced)."""
    codes = {v.newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    code = codes[array.dtype] if code is None else code
    shape = array.shape if shape is None else shape
    header = struct.pack(">HBB", 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """A private cache directory, and no network: mirrors point nowhere unless a test says."""
    monkeypatch.setenv("PYDL_HOME", str(tmp_path / "home"))
    for module in (mnist, fashion_mnist, cifar10):
        monkeypatch.setattr(module, "MIRRORS", ())
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", ())


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_idx_round_trip(tmp_path, dtype, gzipped):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 5, 2)) * 50).astype(dtype)
    data = idx_bytes(array)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(data) if gzipped else data)
    loaded = load_idx(path)
    assert loaded.dtype == np.dtype(dtype) and loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, array)


@pytest.mark.parametrize("data,message", [
    (idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))[:-1], "truncated"),
    (idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4)) + b"\0", "trailing data"),
    (b"\x01\x00" + idx_bytes(np.arange(4, dtype=np.uint8))[2:], "magic"),
    (idx_bytes(np.arange(4, dtype=np.uint8), code=0x0A), "dtype code 0x0a"),
    (idx_bytes(np.arange(4, dtype=np.uint8), shape=(2, 3)), "truncated"),
    (struct.pack(">HBB", 0, 8, 3) + b"\0\0\0\2", "truncated IDX header"),
    (struct.pack(">HBB", 0, 8, 0), "0 dimensions"),
    (b"\0\0", "too short"),
])
def test_idx_malformed(data, message):
    with pytest.raises(ValueError, match=message) as error:
        parse_idx(data, "/some/file.idx")
    assert "/some/file.idx" in str(error.value)


def test_idx_damaged_gzip(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))[:-10])
    with pytest.raises(ValueError, match=f"{path}.*gzip"):
        load_idx(path)


def write_mnist_dir(directory, n_train=7, n_test=4, gzipped=True, seed=0):
    """Four small IDX files with MNIST's names; returns the arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = [rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_train, dtype=np.uint8),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_test, dtype=np.uint8)]
    for name, array in zip(FILENAMES, arrays):
        data = idx_bytes(array)
        if gzipped:
            (directory / name).write_bytes(gzip.compress(data))
        else:
            (directory / name[:-3]).write_bytes(data)
    return arrays


def check_loaded(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    for got, want in zip((x_train, y_train, x_test, y_test), arrays):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


def _idx_header(code, shape):
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def test_idx_gzip_inflates_no_further_than_its_header_declares(tmp_path):
    # 254 KiB of gzip that inflates to 256 MiB, behind a header for a 2x2 image: only
    # the header and the declared 4 bytes (plus one to see the trailing data) inflate.
    path = tmp_path / "bomb.idx.gz"
    with gzip.open(path, "wb") as f:
        f.write(_idx_header(0x08, (2, 2)) + bytes(4))
        for _ in range(256):
            f.write(bytes(1 << 20))
    assert os.path.getsize(path) < 300_000
    with pytest.raises(ValueError, match="trailing data"):
        load_idx(path)
    # A header claiming 10**12 floats: ValueError, raw or gzipped, before any allocation.
    header = _idx_header(0x0D, (10 ** 6, 10 ** 6))
    raw = tmp_path / "huge.idx"
    raw.write_bytes(header + bytes(64))
    with pytest.raises(ValueError, match="truncated"):
        load_idx(raw)
    gz = tmp_path / "huge.idx.gz"
    gz.write_bytes(gzip.compress(header + bytes(64)))
    with pytest.raises(ValueError, match="more than .* bytes of gzip data can hold"):
        load_idx(gz)


@pytest.mark.parametrize("gzipped", [True, False])
def test_mnist_from_explicit_path(tmp_path, gzipped):
    arrays = write_mnist_dir(tmp_path / "m", gzipped=gzipped)
    check_loaded(mnist.load_data(path=tmp_path / "m"), arrays)


def test_mnist_from_cache_dir_and_fashion_from_system_dir(tmp_path, monkeypatch):
    arrays = write_mnist_dir(tmp_path / "home" / "datasets" / "mnist", seed=1)
    check_loaded(mnist.load_data(), arrays)
    arrays = write_mnist_dir(tmp_path / "usr-share", seed=2)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (str(tmp_path / "usr-share"),))
    check_loaded(fashion_mnist.load_data(), arrays)


def test_mnist_content_errors(tmp_path):
    arrays = write_mnist_dir(tmp_path / "m")
    (tmp_path / "m" / FILENAMES[1]).write_bytes(gzip.compress(idx_bytes(arrays[1][:-1])))
    with pytest.raises(ValueError, match="6 labels for the 7 images"):
        mnist.load_data(path=tmp_path / "m")
    (tmp_path / "m" / FILENAMES[0]).write_bytes(gzip.compress(idx_bytes(np.zeros((7, 28, 27),
                                                                                 np.uint8))))
    with pytest.raises(ValueError, match=r"train-images.*\(N, 28, 28\)"):
        mnist.load_data(path=tmp_path / "m")


def test_missing_files_offline_give_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as error:
        fashion_mnist.load_data()
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    assert all(name in message for name in FILENAMES)
    assert os.path.join(str(tmp_path / "home"), "datasets", "fashion-mnist") in message
    assert "dataset-fashion-mnist" in message
    write_mnist_dir(tmp_path / "partial")
    os.remove(tmp_path / "partial" / FILENAMES[3])
    with pytest.raises(DatasetNotFoundError, match=FILENAMES[3]):
        mnist.load_data(path=tmp_path / "partial")
    # A mirror that cannot be reached is reported, not fatal in another way.
    monkeypatch.setattr(mnist, "MIRRORS", ("http://127.0.0.1:9/",))
    with pytest.raises(DatasetNotFoundError, match="127.0.0.1:9"):
        mnist.load_data()


def test_download_checks_sha256_and_fills_the_cache(tmp_path, monkeypatch):
    arrays = write_mnist_dir(tmp_path / "server")
    sums = tuple(hashlib.sha256((tmp_path / "server" / n).read_bytes()).hexdigest()
                 for n in FILENAMES)
    monkeypatch.setattr(mnist, "MIRRORS", ((tmp_path / "server").as_uri() + "/",))
    monkeypatch.setattr(mnist, "SHA256", sums[:3] + ("0" * 64,))
    with pytest.raises(ValueError, match="SHA-256"):
        mnist.load_data()
    cache = tmp_path / "home" / "datasets" / "mnist"
    assert sorted(os.listdir(cache)) == sorted(FILENAMES[:3])  # the bad file never landed
    monkeypatch.setattr(mnist, "SHA256", sums)
    check_loaded(mnist.load_data(), arrays)
    assert sorted(os.listdir(cache)) == sorted(FILENAMES)
    assert _files.sha256_of(cache / FILENAMES[0]) == sums[0]


def test_real_fashion_mnist_from_the_debian_package(monkeypatch):
    directory = "/usr/share/datasets/fashion-mnist"
    if not os.path.isfile(os.path.join(directory, FILENAMES[0])):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (directory,))
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == y_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert y_train[0] == 9 and x_train.max() == 255  # the first image is an ankle boot


# ---- CIFAR-10 ---------------------------------------------------------------------------

def cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    return images, labels, pickle.dumps({b"batch_label": b"batch", b"labels": labels,
                                         b"data": images, b"filenames": [b"a.png"] * n},
                                        protocol=2)


def expected_images(images):
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_cifar_batch_reader():
    images, labels, data = cifar_batch(6, 0)
    x, y = cifar10.read_batch(data, "data_batch_1")
    assert x.shape == (6, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.uint8
    np.testing.assert_array_equal(x, expected_images(images))
    # channel 0 of pixel (row 0, column 1) is byte 1; channel 1 starts 1024 bytes later
    assert x[0, 0, 1, 0] == images[0, 1] and x[0, 0, 0, 1] == images[0, 1024]
    assert y.tolist() == labels


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pydl-pwned",))


@pytest.mark.parametrize("payload", [
    {b"data": Exploit(), b"labels": []},
    {b"data": np.zeros((1, 3072), np.uint8), b"labels": [Exploit()]},
    {b"data": np.array([None] * 3, dtype=object), b"labels": []},
    {b"data": np.zeros((1, 3072), np.uint8), b"labels": [1], b"x": np.float32},
])
def test_cifar_reader_refuses_hostile_pickles(payload):
    data = pickle.dumps(payload, protocol=2)
    with pytest.raises(ValueError, match="not a readable CIFAR-10 batch"):
        cifar10.read_batch(data, "data_batch_1")
    assert not os.path.exists("/tmp/pydl-pwned")


def test_cifar_reader_is_linear_in_repeated_memo_references():
    # A tuple of two references to a tuple of two ... 40 levels deep: a few hundred
    # bytes of pickle standing for 2**40 leaves. Refused at once, not expanded.
    labels = 0
    for _ in range(40):
        labels = (labels, labels)
    data = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": labels}, protocol=2)
    assert len(data) < 4000
    start = time.perf_counter()
    with pytest.raises(ValueError, match="tree of more than"):
        cifar10.read_batch(data, "bomb")
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("payload,message", [
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "labels"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, r"\(N, 3072\)"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, "0..9"),
    ([1, 2], "dict"),
])
def test_cifar_batch_content_errors(payload, message):
    with pytest.raises(ValueError, match=message):
        cifar10.read_batch(pickle.dumps(payload, protocol=2), "test_batch")


def write_cifar(directory, n=3):
    """Six batch files in directory/cifar-10-batches-py; returns (x, y) of train and test."""
    batch_dir = directory / cifar10.BATCH_DIR
    batch_dir.mkdir(parents=True)
    written = {}
    for i, name in enumerate(cifar10.TRAIN_BATCHES + (cifar10.TEST_BATCH,)):
        images, labels, data = cifar_batch(n, i)
        (batch_dir / name).write_bytes(data)
        written[name] = (expected_images(images), np.array(labels, np.uint8)[:, None])
    train = [written[name] for name in cifar10.TRAIN_BATCHES]
    return ((np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
            written[cifar10.TEST_BATCH])


def check_cifar(result, expected):
    for (x, y), (ex, ey) in zip(result, expected):
        assert x.shape == ex.shape and y.shape == ey.shape == (len(ex), 1)
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


def test_cifar_from_directory_tarball_and_cache(tmp_path):
    expected = write_cifar(tmp_path / "d")
    check_cifar(cifar10.load_data(path=tmp_path / "d"), expected)
    check_cifar(cifar10.load_data(path=tmp_path / "d" / cifar10.BATCH_DIR), expected)
    archive = tmp_path / cifar10.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "d" / cifar10.BATCH_DIR, arcname=cifar10.BATCH_DIR)
    check_cifar(cifar10.load_data(path=archive), expected)
    cache = tmp_path / "home" / "datasets" / "cifar10"
    cache.mkdir(parents=True)
    os.replace(archive, cache / cifar10.ARCHIVE)
    check_cifar(cifar10.load_data(), expected)
    with pytest.raises(ValueError, match="not a readable CIFAR-10 archive"):
        (tmp_path / "bad.tar.gz").write_bytes(b"\x1f\x8b nonsense")
        cifar10.load_data(path=tmp_path / "bad.tar.gz")


def test_cifar_missing_offline(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=cifar10.ARCHIVE):
        cifar10.load_data()


# ---- optional extras ----------------------------------------------------------------------

@pytest.mark.parametrize("name,x_shape,classes", [("digits", (8, 8), 10), ("iris", (4,), 3),
                                                   ("breast_cancer", (30,), 2)])
def test_sklearn_bundled(name, x_shape, classes):
    pytest.importorskip("sklearn")
    import importlib
    module = importlib.import_module(f"pydl.datasets.{name}")
    (x_train, y_train), (x_test, y_test) = module.load_data(test_split=0.25, seed=0)
    assert x_train.shape[1:] == x_test.shape[1:] == x_shape and x_train.dtype == np.float32
    assert y_train.dtype == np.int64 and set(np.unique(np.concatenate([y_train, y_test]))) == \
        set(range(classes))
    total = len(y_train) + len(y_test)
    assert len(y_test) == round(total * 0.25)
    (x2, _), _ = module.load_data(test_split=0.25, seed=0)
    np.testing.assert_array_equal(x_train, x2)


def test_sklearn_missing_names_the_extra(monkeypatch):
    import sys
    from pydl.datasets import iris
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"pip install pydl\[datasets\]"):
        iris.load_data()


def test_mnist1d_generated_locally(monkeypatch):
    pytest.importorskip("mnist1d")
    import urllib.request
    from pydl.datasets import mnist1d

    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d must not download")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    state = np.random.get_state()[1].copy()
    (x_train, y_train), (x_test, y_test) = mnist1d.load_data(num_samples=1000)
    assert x_train.shape == (800, 40) and x_test.shape == (200, 40)  # the package's 80/20
    assert sorted(np.unique(y_train)) == list(range(10))
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global state restored
    assert abs(float(np.concatenate([x_train, x_test]).std()) - 1) < 1e-3  # as normalized
