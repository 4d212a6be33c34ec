"""The tensor functions PyTorch tutorials use, against torch: values, indices and every
gradient (float64 to 1e-10, float32 to float32 rounding), plus finite differences
where the gradient is hand-written, and the errors for bad arguments."""
import numpy as np
import pytest

import pydl
from pydl.nn import functional as F

from conftest import check_grad

torch = pytest.importorskip("torch")


def both(rng, *shape, dtype="float64"):
    """The same fresh random values as a pydl leaf and a torch leaf (requires_grad)."""
    x = rng.standard_normal(shape).astype(dtype)
    return pydl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)


def compare(ours, theirs, rng, inputs, rtol=1e-10, atol=1e-12):
    """Same output, and the same input gradients for one random output gradient."""
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=rtol,
                               atol=atol)
    g = rng.standard_normal(ours.shape)
    (ours * pydl.tensor(g, dtype=ours.dtype)).sum().backward()
    (theirs * torch.tensor(g, dtype=theirs.dtype)).sum().backward()
    for a, b in inputs:
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol)


# ---- *_like constructors -------------------------------------------------------------

def test_like_constructors_take_shape_dtype_and_device():
    base = pydl.zeros(2, 3, dtype="float64")
    for t in (pydl.randn_like(base), pydl.rand_like(base), pydl.empty_like(base),
              pydl.full_like(base, 2.5), pydl.randint_like(base, 5)):
        assert t.shape == (2, 3) and t.dtype == pydl.float64 and t.device == base.device
    assert pydl.full_like(base, 2.5).tolist() == [[2.5] * 3] * 2
    assert pydl.randn_like(pydl.zeros(2, dtype="int64")).dtype == pydl.float32
    assert pydl.randn_like(base, dtype="float32", requires_grad=True).requires_grad
    ints = pydl.randint_like(pydl.zeros(1000, dtype="int64"), 3, 7).numpy()
    assert ints.dtype == np.int64 and set(np.unique(ints)) == {3, 4, 5, 6}
    uniform = pydl.rand_like(pydl.zeros(1000)).numpy()
    assert 0 <= uniform.min() and uniform.max() < 1 and 0.4 < uniform.mean() < 0.6


def test_like_constructors_follow_the_global_seed():
    pydl.manual_seed(3)
    expected = pydl.randn(4, 5).numpy()
    pydl.manual_seed(3)
    np.testing.assert_array_equal(pydl.randn_like(pydl.zeros(4, 5)).numpy(), expected)


# ---- sort, argsort, topk ----------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_and_argsort_match_torch(rng, dim, descending):
    ours, theirs = both(rng, 5, 6)
    values, indices = ours.sort(dim, descending=descending)
    t_values, t_indices = theirs.sort(dim, descending=descending)
    np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())
    np.testing.assert_array_equal(ours.argsort(dim, descending).numpy(),
                                  torch.argsort(theirs, dim, descending).numpy())
    compare(values, t_values, rng, [(ours, theirs)])


def test_sort_is_stable_on_ties():
    x = pydl.tensor([2.0, 1.0, 2.0, 1.0])
    assert x.argsort().tolist() == [1, 3, 0, 2]
    assert x.argsort(descending=True).tolist() == [0, 2, 1, 3]


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("dim", [1, 0])
def test_topk_matches_torch(rng, largest, dim):
    ours, theirs = both(rng, 4, 7)
    values, indices = pydl.topk(ours, 3, dim=dim, largest=largest)
    t_values, t_indices = torch.topk(theirs, 3, dim=dim, largest=largest)
    np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())
    compare(values, t_values, rng, [(ours, theirs)])
    with pytest.raises(ValueError, match="k=8 is out of range"):
        ours.topk(8, dim=dim)


# ---- gather, scatter, masked_fill ---------------------------------------------------------

def test_gather_matches_torch_with_repeats_and_a_smaller_index(rng):
    ours, theirs = both(rng, 4, 5)
    index = rng.integers(0, 5, (3, 6))  # smaller than the input along dim 0, repeats along 1
    compare(ours.gather(1, pydl.tensor(index)), theirs.gather(1, torch.tensor(index)), rng,
            [(ours, theirs)])
    rows = pydl.tensor(rng.integers(0, 4, (2, 5)))
    check_grad(lambda x: x.gather(0, rows), rng.standard_normal((4, 5)))


def test_gather_rejects_bad_indices(rng):
    x = pydl.tensor(rng.standard_normal((3, 4)))
    with pytest.raises(IndexError, match=r"\[0, 4\)"):
        x.gather(1, pydl.tensor([[0, 4]] * 3))
    with pytest.raises(IndexError, match=r"-1 to"):
        x.gather(1, pydl.tensor([[-1]] * 3))  # NumPy would wrap around; torch refuses
    with pytest.raises(TypeError, match="int64, got float32"):
        x.gather(1, pydl.tensor([[0.0]] * 3))
    with pytest.raises(ValueError, match="no larger than"):
        x.gather(1, pydl.tensor([[0]] * 4))


@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_and_scatter_add_match_torch(rng, dim):
    # Distinct targets along dim (scatter with repeats keeps an arbitrary one, in torch too).
    index = np.stack([rng.permutation(4)[:3] for _ in range(5)], axis=1)  # (3, 5)
    shape = (4, 5)
    if dim == 1:
        index, shape = index.T.copy(), (5, 4)
    for op in ("scatter", "scatter_add"):
        ours, theirs = both(rng, *shape)
        src, t_src = both(rng, *index.shape)
        out = getattr(ours, op)(dim, pydl.tensor(index), src)
        t_out = getattr(theirs, op)(dim, torch.tensor(index), t_src)
        compare(out, t_out, rng, [(ours, theirs), (src, t_src)])
        larger = rng.standard_normal((6, 6))  # only its leading index.shape part is used
        np.testing.assert_allclose(
            getattr(ours, op)(dim, pydl.tensor(index), pydl.tensor(larger)).detach().numpy(),
            getattr(theirs, op)(dim, torch.tensor(index), torch.tensor(larger)).detach().numpy(),
            rtol=1e-12)
    repeated = np.zeros((2, 5), np.int64)  # every column hits row 0 twice
    ours, theirs = both(rng, 3, 5)
    compare(ours.scatter_add(0, pydl.tensor(repeated), pydl.ones(2, 5, dtype="float64")),
            theirs.scatter_add(0, torch.tensor(repeated), torch.ones(2, 5, dtype=torch.float64)),
            rng, [(ours, theirs)])
    check_grad(lambda x, y: x.scatter(dim, pydl.tensor(index), y), rng.standard_normal(shape),
               rng.standard_normal(index.shape))


def test_in_place_scatters_match_torch(rng):
    labels = rng.integers(0, 4, 6)
    ours = pydl.zeros(6, 4).scatter_(1, pydl.tensor(labels).unsqueeze(1), 1.0)
    np.testing.assert_array_equal(ours.numpy(), np.eye(4, dtype=np.float32)[labels])
    src = rng.standard_normal((6, 4))
    index = rng.integers(0, 3, (6, 4))
    ours = pydl.zeros(3, 4, dtype="float64").scatter_add_(0, pydl.tensor(index),
                                                          pydl.tensor(src))
    theirs = torch.zeros(3, 4, dtype=torch.float64).scatter_add_(0, torch.tensor(index),
                                                                 torch.tensor(src))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12)
    leaf = pydl.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        leaf.scatter_(0, pydl.tensor([0]), 1.0)


def test_masked_fill_matches_torch(rng):
    ours, theirs = both(rng, 3, 4)
    mask = rng.random((1, 4)) < 0.5  # broadcast over the rows
    compare(ours.masked_fill(pydl.tensor(mask), -1.5),
            theirs.masked_fill(torch.tensor(mask), -1.5), rng, [(ours, theirs)])
    filled = pydl.tensor(rng.standard_normal((3, 4))).masked_fill_(pydl.tensor(mask), 0.0)
    assert (filled.numpy()[:, mask[0]] == 0).all()
    with pytest.raises(TypeError, match="bool tensor, got float32"):
        ours.masked_fill(pydl.zeros(3, 4), 0.0)


def test_where_with_the_condition_alone_gives_indices(rng):
    x = rng.standard_normal((4, 5))
    ours = pydl.where(pydl.tensor(x) > 0)
    theirs = torch.where(torch.tensor(x) > 0)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ---- chunk, split, unbind, all/any, clamp --------------------------------------------------

@pytest.mark.parametrize("how", [("chunk", 3), ("split", 2), ("split", [1, 4, 2])])
def test_chunk_and_split_match_torch_and_carry_gradients(rng, how):
    name, arg = how
    ours, theirs = both(rng, 7, 3)
    pieces = getattr(ours, name)(arg, 0)
    t_pieces = getattr(theirs, name)(arg, 0)
    assert [p.shape for p in pieces] == [tuple(p.shape) for p in t_pieces]
    weights = [rng.standard_normal(p.shape) for p in pieces]
    sum(((p * pydl.tensor(w)).sum() for p, w in zip(pieces, weights)), pydl.tensor(0.0)) \
        .backward()
    sum((p * torch.tensor(w)).sum() for p, w in zip(t_pieces, weights)).backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="add up to 7"):
        ours.split([3, 3])


def test_unbind_all_any(rng):
    x = rng.standard_normal((3, 4))
    assert [t.tolist() for t in pydl.tensor(x).unbind(1)] == [list(c) for c in x.T]
    flags = rng.random((3, 4)) < 0.5
    for dim in (None, 0, 1):
        for op in ("all", "any"):
            ours = getattr(pydl.tensor(flags), op)() if dim is None else \
                getattr(pydl.tensor(flags), op)(dim)
            theirs = getattr(torch.tensor(flags), op)() if dim is None else \
                getattr(torch.tensor(flags), op)(dim)
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_clamp_and_clip_match_torch(rng):
    ours, theirs = both(rng, 4, 5)
    compare(ours.clamp(-0.5, 0.7), theirs.clamp(-0.5, 0.7), rng, [(ours, theirs)])
    ours, theirs = both(rng, 4, 5)
    compare(pydl.clip(ours, min=0.1), torch.clip(theirs, min=0.1), rng, [(ours, theirs)])
    ours, theirs = both(rng, 4, 5)
    low, t_low = both(rng, 5)
    high, t_high = both(rng, 4, 1)
    compare(ours.clamp(low, high + 2), theirs.clamp(t_low, t_high + 2), rng,
            [(ours, theirs), (low, t_low), (high, t_high)])
    w = pydl.tensor([-3.0, 0.2, 5.0])
    assert w.clamp_(-1, 1).tolist() == pytest.approx([-1.0, 0.2, 1.0])


# ---- einsum --------------------------------------------------------------------------------

EINSUMS = [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
           ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]), ("i,i->", [(5,), (5,)]),
           ("i,j->ij", [(3,), (4,)]), ("ij->ji", [(3, 4)]), ("ijk->j", [(2, 3, 4)]),
           ("...ij,...jk", [(2, 3, 4), (4, 5)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
           ("ijk,ik->j", [(2, 3, 4), (2, 4)]), ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
           ("ij,kj", [(1, 3), (4, 3)])]


@pytest.mark.parametrize("equation,shapes", EINSUMS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_einsum_matches_torch(rng, equation, shapes, dtype):
    pairs = [both(rng, *shape, dtype=dtype) for shape in shapes]
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    compare(pydl.einsum(equation, *[p[0] for p in pairs]),
            torch.einsum(equation, *[p[1] for p in pairs]), rng, pairs, **tol)


def test_einsum_gradient_by_finite_differences(rng):
    check_grad(lambda a, b: pydl.einsum("bij,jk->bki", a, b), rng.standard_normal((2, 3, 4)),
               rng.standard_normal((4, 2)))


def test_einsum_runs_the_gemm_kernel(rng, monkeypatch):
    from pydl import _kernels
    calls = []
    gemm = _kernels.cpu.gemm
    monkeypatch.setattr(_kernels.cpu, "gemm", lambda *a, **k: calls.append(1) or gemm(*a, **k))
    pydl.einsum("bij,bjk->bik", pydl.randn(2, 3, 4), pydl.randn(2, 4, 5))
    assert calls


def test_einsum_errors_name_the_problem():
    with pytest.raises(NotImplementedError, match="repeats a letter"):
        pydl.einsum("ii->i", pydl.ones(3, 3))
    with pytest.raises(ValueError, match="sizes 3 and 4"):
        pydl.einsum("ij,jk->ik", pydl.ones(2, 3), pydl.ones(4, 2))
    with pytest.raises(ValueError, match="names 2 operands, got 1"):
        pydl.einsum("ij,jk->ik", pydl.ones(2, 3))


# ---- one_hot, in-place training updates, torch's import path ----------------------------------

def test_one_hot_matches_torch(rng):
    labels = rng.integers(0, 5, (3, 4))
    np.testing.assert_array_equal(F.one_hot(pydl.tensor(labels)).numpy(),
                                  torch.nn.functional.one_hot(torch.tensor(labels)).numpy())
    assert F.one_hot(pydl.tensor([1]), num_classes=4).tolist() == [[0, 1, 0, 0]]
    with pytest.raises(TypeError, match="int64 tensor of class indices, got float32"):
        F.one_hot(pydl.tensor([1.0]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        F.one_hot(pydl.tensor([2]), 2)


def test_manual_sgd_with_in_place_updates_matches_torch(rng):
    """The tutorial loop: w -= lr * w.grad under no_grad, then w.grad.zero_()."""
    x, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 1))
    w0 = rng.standard_normal((3, 1))
    results = []
    for lib in (pydl, torch):
        w = lib.tensor(w0.copy(), requires_grad=True)
        b = lib.zeros(1, dtype=lib.float64, requires_grad=True)
        X, Y = lib.tensor(x), lib.tensor(y)
        for _ in range(5):
            loss = ((X @ w + b - Y) ** 2).mean()
            loss.backward()
            with lib.no_grad():
                w -= 0.1 * w.grad
                b.sub_(b.grad, alpha=0.1)
                w.grad.zero_()
                b.grad.mul_(0).add_(0)
        results.append((w.detach().numpy().copy(), b.detach().numpy().copy()))
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    leaf = pydl.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="pydl.no_grad"):
        leaf -= 1


def test_utils_data_is_torchs_import_path():
    from pydl.utils.data import DataLoader, TensorDataset
    import pydl.utils.data
    assert pydl.utils.data is pydl.data
    batches = list(DataLoader(TensorDataset(pydl.arange(5)), batch_size=2))
    assert [b[0].tolist() for b in batches] == [[0, 1], [2, 3], [4]]


# ---- more elementwise, reductions, shapes and constructors ------------------------------

UNARY = ["square", "log1p", "sin", "cos", "sign", "round", "floor", "ceil", "isnan", "isfinite"]


@pytest.mark.parametrize("name", UNARY)
def test_more_elementwise_functions_match_torch(rng, name):
    values = np.abs(rng.standard_normal((4, 5))) if name == "log1p" else \
        3 * rng.standard_normal((4, 5))
    ours, theirs = pydl.tensor(values, requires_grad=True), torch.tensor(values,
                                                                         requires_grad=True)
    out, t_out = getattr(pydl, name)(ours), getattr(torch, name)(theirs)
    if t_out.dtype == torch.bool or not t_out.requires_grad or name in ("sign", "round",
                                                                        "floor", "ceil"):
        np.testing.assert_array_equal(out.detach().numpy(), t_out.detach().numpy())
    else:
        compare(out, t_out, rng, [(ours, theirs)])


@pytest.mark.parametrize("case", [("cumsum", (1,)), ("cumsum", (0,)), ("logsumexp", (1,)),
                                  ("logsumexp", ((0, 1), True)), ("norm", ()), ("norm", (1, 1)),
                                  ("norm", (float("inf"), 0)), ("flip", ((0, 1),)),
                                  ("narrow", (1, 1, 3)), ("repeat", (2, 1, 3)), ("tril", (0,)),
                                  ("triu", (1,)), ("tril", (-1,))])
def test_more_tensor_methods_match_torch(rng, case):
    name, args = case
    ours, theirs = both(rng, 4, 5)
    if name == "norm" and len(args) == 2:  # torch spells the dim-wise norm this way too
        out, t_out = ours.norm(*args), torch.linalg.vector_norm(theirs, args[0], args[1])
    else:
        out, t_out = getattr(ours, name)(*args), getattr(theirs, name)(*args)
    compare(out, t_out, rng, [(ours, theirs)])


def test_logsumexp_is_stable_and_cumsum_gradient_by_finite_differences(rng):
    assert pydl.tensor([1e4, 1e4], dtype="float64").logsumexp(0).item() == \
        pytest.approx(1e4 + np.log(2))
    check_grad(lambda x: x.cumsum(1), rng.standard_normal((3, 4)))


def test_index_select_nonzero_and_constructors_match_torch(rng):
    ours, theirs = both(rng, 5, 3)
    index = np.array([4, 0, 4])
    compare(ours.index_select(0, pydl.tensor(index)),
            theirs.index_select(0, torch.tensor(index)), rng, [(ours, theirs)])
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        ours.index_select(0, pydl.tensor([5]))
    flags = rng.random((3, 4)) < 0.5
    np.testing.assert_array_equal(pydl.tensor(flags).nonzero().numpy(),
                                  torch.tensor(flags).nonzero().numpy())
    np.testing.assert_allclose(pydl.linspace(-1, 2, 7).numpy(), torch.linspace(-1, 2, 7).numpy())
    base = pydl.zeros(1, dtype="float64")
    assert base.new_zeros(2, 3).dtype == pydl.float64 and base.new_ones(2).tolist() == [1, 1]
    assert base.new_full((2,), 4).tolist() == [4, 4] and base.new_tensor([1]).dtype == base.dtype
    assert pydl.tensor([1, 2]).type_as(base).dtype == pydl.float64
    assert pydl.allclose(pydl.tensor([1.0]), pydl.tensor([1.0 + 1e-7]))
    assert not pydl.allclose(pydl.tensor([1.0]), pydl.tensor([1.1]))


def test_in_place_initializers_follow_the_seed():
    pydl.manual_seed(5)
    a = pydl.empty(2000).normal_(1.0, 2.0).numpy().copy()
    pydl.manual_seed(5)
    b = pydl.empty(2000).normal_(1.0, 2.0).numpy()
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean() - 1) < 0.15 and abs(a.std() - 2) < 0.15
    u = pydl.empty(2000).uniform_(-3, -1).numpy()
    assert u.min() >= -3 and u.max() < -1


def test_comparisons_of_0d_tensors_give_0d_tensors():
    flag = pydl.tensor(2.0) > 1
    assert flag.shape == () and flag.item() is True


def test_random_split_and_subset(rng):
    data = pydl.data.TensorDataset(pydl.arange(10))
    pydl.manual_seed(0)
    parts = pydl.data.random_split(data, [6, 3, 1])
    assert [len(p) for p in parts] == [6, 3, 1]
    assert sorted(i for p in parts for i in p.indices) == list(range(10))
    assert parts[1][0][0].item() == parts[1].indices[0]
    assert [len(p) for p in pydl.data.random_split(data, [0.5, 0.3, 0.2])] == [5, 3, 2]
    with pytest.raises(ValueError, match="add up to"):
        pydl.data.random_split(data, [5, 6])


@pytest.mark.parametrize("name,shapes", [("mm", [(3, 4), (4, 5)]), ("bmm", [(2, 3, 4), (2, 4, 5)]),
                                         ("outer", [(3,), (4,)])])
def test_matrix_product_forms_match_torch(rng, name, shapes):
    pairs = [both(rng, *shape) for shape in shapes]
    compare(getattr(pydl, name)(*[p[0] for p in pairs]),
            getattr(torch, name)(*[p[1] for p in pairs]), rng, pairs)
    with pytest.raises(ValueError, match=f"{name}: expects"):
        getattr(pydl, name)(pydl.ones(2, 2, 2, 2), pydl.ones(2))
    with pytest.raises(ValueError, match="batch sizes differ"):
        pydl.bmm(pydl.ones(2, 3, 4), pydl.ones(1, 4, 5))  # matmul would broadcast; bmm does not
