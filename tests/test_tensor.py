"""Tensor basics: factories, dtypes, indexing, repr, errors, DLPack, seeding."""
import numpy as np
import pytest

import pydl


def test_tensor_infers_dtypes_like_torch():
    assert pydl.tensor([1.5, 2]).dtype == pydl.float32
    assert pydl.tensor([1, 2]).dtype == pydl.int64
    assert pydl.tensor([True, False]).dtype == pydl.bool
    assert pydl.tensor(np.zeros(2)).dtype == pydl.float64  # NumPy float64 stays float64
    assert pydl.tensor(np.zeros(2, np.int32)).dtype == pydl.int64
    assert pydl.tensor([1, 2], dtype="float64").dtype == np.float64
    assert pydl.tensor(3.0).shape == () and pydl.tensor(3.0).item() == 3.0


def test_tensor_copies_but_from_numpy_shares(rng):
    a = rng.standard_normal(4).astype(np.float32)
    copied, shared = pydl.tensor(a), pydl.from_numpy(a)
    a[0] = 42
    assert copied.numpy()[0] != 42 and shared.numpy()[0] == 42
    with pytest.raises(TypeError, match="unsupported dtype int8"):
        pydl.from_numpy(np.zeros(2, np.int8))


def test_bad_dtype_is_rejected():
    with pytest.raises(TypeError, match="unsupported dtype"):
        pydl.zeros(2, dtype="complex64")
    with pytest.raises(TypeError, match="unsupported dtype"):
        pydl.tensor([1], dtype="int8")
    with pytest.raises(TypeError, match="cannot make a tensor"):
        pydl.tensor(["a"])
    with pytest.raises(RuntimeError, match="floating point"):
        pydl.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="float32 or float64"):
        pydl.randn(2, dtype="int64")


def test_factories():
    assert pydl.zeros(2, 3).shape == (2, 3) and not pydl.zeros((2, 3)).numpy().any()
    assert (pydl.ones([2, 3], dtype="float64").numpy() == 1).all()
    assert pydl.full((2,), 7).dtype == pydl.int64 and pydl.full((2,), 7).tolist() == [7, 7]
    assert pydl.full(3, 0.5).dtype == pydl.float32
    like = pydl.ones(2, 2, dtype="float64")
    assert pydl.zeros_like(like).dtype == pydl.float64 and pydl.ones_like(like).sum().item() == 4
    assert pydl.arange(5).tolist() == [0, 1, 2, 3, 4] and pydl.arange(5).dtype == pydl.int64
    np.testing.assert_allclose(pydl.arange(0, 1, 0.25).numpy(), [0, 0.25, 0.5, 0.75])
    assert pydl.arange(0, 1, 0.25).dtype == pydl.float32
    np.testing.assert_array_equal(pydl.eye(3).numpy(), np.eye(3))
    assert pydl.empty(3, 4).shape == (3, 4) and pydl.empty(2, dtype="int64").dtype == pydl.int64
    assert pydl.zeros(2, requires_grad=True).requires_grad
    r = pydl.rand(1000)
    assert r.dtype == pydl.float32 and 0 <= r.min().item() and r.max().item() < 1
    n = pydl.randn(2000, dtype="float64")
    assert abs(n.mean().item()) < 0.1 and abs(n.std().item() - 1) < 0.1
    ints = pydl.randint(3, 7, (100,))
    assert ints.dtype == pydl.int64 and set(ints.tolist()) == {3, 4, 5, 6}
    assert sorted(pydl.randperm(6).tolist()) == list(range(6))
    with pytest.raises(TypeError, match="shape entries"):
        pydl.zeros(2.5)


def test_manual_seed_reproduces_random_factories():
    pydl.manual_seed(1234)
    first = [pydl.randn(3, 4).numpy(), pydl.rand(5).numpy(), pydl.randint(10, size=(4,)).numpy()]
    pydl.manual_seed(1234)
    second = [pydl.randn(3, 4).numpy(), pydl.rand(5).numpy(), pydl.randint(10, size=(4,)).numpy()]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    pydl.manual_seed(4321)
    assert not np.array_equal(pydl.randn(3, 4).numpy(), first[0])
    with pytest.raises(ValueError, match="seed"):
        pydl.manual_seed(-1)


def test_attributes_and_conversions(rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    t = pydl.tensor(a)
    assert t.shape == (2, 3) and t.ndim == 2 and t.dim() == 2 and len(t) == 2
    assert t.size() == (2, 3) and t.size(-1) == 3 and t.numel() == 6
    assert t.device == "cpu" and str(t.device) == "cpu" and t.is_leaf
    assert t.T.shape == (3, 2) and t.double().dtype == pydl.float64
    assert t.double().float().dtype == pydl.float32 and t.long().dtype == pydl.int64
    assert t.to("cpu") is t and t.to(pydl.float64).dtype == pydl.float64
    assert [row.shape for row in t] == [(3,), (3,)]
    assert float(t[0, 1]) == pytest.approx(float(a[0, 1]))
    assert f"{t.sum():.3f}" == f"{a.sum():.3f}"
    np.testing.assert_array_equal(np.asarray(t), a)
    with pytest.raises(TypeError, match="0-d"):
        len(pydl.tensor(1.0))
    with pytest.raises(ValueError, match="one-element"):
        t.item()


def test_numpy_refuses_tensors_that_require_grad(rng):
    t = pydl.tensor(rng.standard_normal(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"detach\(\)"):
        t.numpy()
    d = t.detach()
    assert not d.requires_grad and d.numpy() is t.data


def test_repr():
    assert repr(pydl.tensor([1.0, 2.5])) == "tensor([1. , 2.5])"
    assert repr(pydl.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(pydl.tensor([1.0], dtype="float64")) == "tensor([1.], dtype=pydl.float64)"
    x = pydl.tensor([1.0], requires_grad=True)
    assert repr(x) == "tensor([1.], requires_grad=True)"
    assert repr(x * 2) == "tensor([2.], grad_fn=<MulBackward>)"


def test_type_promotion():
    f32, f64 = pydl.ones(2), pydl.ones(2, dtype="float64")
    i64 = pydl.tensor([1, 2])
    assert (f32 + 2.5).dtype == pydl.float32 and (2.5 * f32).dtype == pydl.float32
    assert (f32 + f64).dtype == pydl.float64
    assert (i64 + 1).dtype == pydl.int64 and (i64 * 1.5).dtype == pydl.float32
    assert (i64 / 2).dtype == pydl.float32 and (i64 / 2).tolist() == [0.5, 1.0]
    assert (i64 + f32).dtype == pydl.float32
    assert (np.float32(2) * f32).dtype == pydl.float32
    assert (np.ones(2) + f32).dtype == pydl.float64  # a float64 array operand is a tensor


def test_comparisons_give_bool_tensors(rng):
    a = rng.standard_normal(5)
    t = pydl.tensor(a, requires_grad=True)
    for got, want in [(t > 0, a > 0), (t <= 0.5, a <= 0.5), (t == t, a == a),
                      (0 < t, 0 < a), (t != 1.0, a != 1.0), ((t > 0) & (t < 1), (a > 0) & (a < 1))]:
        assert got.dtype == pydl.bool and not got.requires_grad
        np.testing.assert_array_equal(got.numpy(), want)
    assert {t: 1}[t] == 1  # still hashable by identity


def test_indexing_and_setitem(rng):
    a = rng.standard_normal((4, 5)).astype(np.float32)
    t = pydl.tensor(a)
    np.testing.assert_array_equal(t[1:3, ::2].numpy(), a[1:3, ::2])
    np.testing.assert_array_equal(t[pydl.tensor([3, 0])].numpy(), a[[3, 0]])
    np.testing.assert_array_equal(t[t > 0].numpy(), a[a > 0])
    with pytest.raises(IndexError, match="int64 or bool"):
        t[pydl.tensor([1.0])]
    t[0] = 0.0
    t[:, 1] = pydl.ones(4)
    assert t.numpy()[0, 0] == 0 and (t.numpy()[:, 1] == 1).all()


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        pydl.ones(2, 3) @ pydl.ones(4, 5)
    with pytest.raises(ValueError, match=r"\(2, 2, 3\) and \(3, 3, 4\)"):
        pydl.matmul(pydl.ones(2, 2, 3), pydl.ones(3, 3, 4))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        pydl.tensor(2.0) @ pydl.ones(2)
    with pytest.raises(ValueError, match="cannot expand"):
        pydl.ones(2, 3).expand(4, 3)
    with pytest.raises(ValueError, match="differ outside dim"):
        pydl.cat([pydl.ones(2, 3), pydl.ones(2, 4)])
    with pytest.raises(ValueError, match="same shape"):
        pydl.stack([pydl.ones(2), pydl.ones(3)])
    with pytest.raises(IndexError, match="out of range"):
        pydl.ones(2, 3).sum(dim=2)
    with pytest.raises(ValueError, match="cross_entropy"):
        pydl.nn.functional.cross_entropy(pydl.ones(3, 4), pydl.tensor([0, 1]))
    with pytest.raises(ValueError, match="is not a class index"):
        pydl.nn.functional.cross_entropy(pydl.ones(2, 4), pydl.tensor([0, 7]))


def test_cuda_device_is_refused_without_cuda():
    if pydl.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pydl.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pydl.ones(2).to("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        pydl.zeros(2, device="tpu")
    assert pydl.device("cuda:1") == pydl.Device("cuda", 1)


class _ForeignDeviceArray:
    """Stands in for a CuPy array: another device's array type."""
    shape, ndim, dtype, size = (2,), 1, np.dtype(np.float32), 2

    class device:
        id = 0


def test_mixing_devices_is_an_error():
    foreign = pydl.Tensor._wrap(_ForeignDeviceArray())
    with pytest.raises(RuntimeError, match="same device.*cpu and cuda:0"):
        pydl.ones(2) * foreign


def test_dlpack_round_trip_with_numpy(rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    t = pydl.from_dlpack(a)
    a[0, 0] = 7.0
    assert t.numpy()[0, 0] == 7.0  # shared, not copied
    back = np.from_dlpack(t)
    np.testing.assert_array_equal(back, a)
    assert t.__dlpack_device__() == (1, 0)
    with pytest.raises(RuntimeError, match="detach"):
        np.from_dlpack(pydl.ones(2, requires_grad=True))


def test_dlpack_round_trip_with_torch(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((3, 4)).astype(np.float32)
    t = pydl.tensor(a)
    from_pydl = torch.from_dlpack(t)
    assert tuple(from_pydl.shape) == (3, 4) and from_pydl.dtype == torch.float32
    np.testing.assert_array_equal(from_pydl.numpy(), a)
    back = pydl.from_dlpack(torch.arange(6, dtype=torch.int64).reshape(2, 3))
    assert back.dtype == pydl.int64 and back.tolist() == [[0, 1, 2], [3, 4, 5]]
    from_pydl[0, 0] = -1.0  # the memory is shared
    assert t.numpy()[0, 0] == -1.0
