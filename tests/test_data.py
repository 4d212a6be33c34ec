"""pydl.data: Dataset, TensorDataset and DataLoader (batching, shuffling, drop_last,
seeding, collation)."""
import math

import numpy as np
import pytest

import pydl
from pydl.data import DataLoader, Dataset, TensorDataset, default_collate


class Squares(Dataset):
    """Item i is (float vector, int label, dict) built from i, so batches reveal indices."""

    def __init__(self, n):
        self.n = n

    def __getitem__(self, i):
        return np.full(3, i, np.float32), i * i, {"half": i / 2, "flag": i % 2 == 0}

    def __len__(self):
        return self.n


@pytest.mark.parametrize("n,batch_size,drop_last", [(10, 3, False), (10, 3, True), (9, 3, False),
                                                    (9, 3, True), (2, 5, False), (2, 5, True)])
def test_len_and_batch_sizes(n, batch_size, drop_last):
    loader = DataLoader(Squares(n), batch_size=batch_size, drop_last=drop_last)
    batches = list(loader)
    assert len(batches) == len(loader) == (n // batch_size if drop_last
                                            else math.ceil(n / batch_size))
    sizes = [b[0].shape[0] for b in batches]
    assert all(s == batch_size for s in sizes[:-1])
    if batches:
        assert sizes[-1] == (batch_size if drop_last else n - batch_size * (len(sizes) - 1))


def test_collate_types_and_order():
    vectors, labels, extra = next(iter(DataLoader(Squares(7), batch_size=4)))
    assert isinstance(vectors, pydl.Tensor) and vectors.dtype == pydl.float32
    np.testing.assert_array_equal(vectors.numpy(), np.repeat(np.arange(4.0), 3).reshape(4, 3))
    assert labels.dtype == pydl.int64 and labels.tolist() == [0, 1, 4, 9]
    assert extra["half"].dtype == pydl.float32
    np.testing.assert_array_equal(extra["half"].numpy(), [0, 0.5, 1, 1.5])
    assert extra["flag"].dtype == pydl.bool and extra["flag"].tolist() == [True, False, True, False]


def test_collate_nested_and_errors():
    batch = default_collate([[pydl.tensor([1.0, 2.0]), ("a", 3)],
                             [pydl.tensor([3.0, 4.0]), ("b", 5)]])
    assert isinstance(batch, list) and batch[0].shape == (2, 2)
    assert batch[1][0] == ["a", "b"] and batch[1][1].tolist() == [3, 5]
    # uint8 arrays (images) become int64 tensors: pydl has no uint8 dtype.
    images = default_collate([np.arange(4, dtype=np.uint8)] * 2)
    assert images.dtype == pydl.int64 and images.shape == (2, 4)
    with pytest.raises(ValueError, match="different lengths"):
        default_collate([(1, 2), (1,)])
    with pytest.raises(TypeError, match="collate_fn"):
        default_collate([object(), object()])


def test_shuffle_is_a_permutation_and_reproducible():
    data = TensorDataset(np.arange(20, dtype=np.float32), np.arange(20))
    pydl.manual_seed(5)
    first = np.concatenate([y.numpy() for _, y in DataLoader(data, batch_size=6, shuffle=True)])
    second_epoch = np.concatenate([y.numpy() for _, y in DataLoader(data, 6, shuffle=True)])
    pydl.manual_seed(5)
    again = np.concatenate([y.numpy() for _, y in DataLoader(data, batch_size=6, shuffle=True)])
    assert sorted(first.tolist()) == list(range(20))
    assert first.tolist() != list(range(20))  # 1 chance in 20! of a false failure
    np.testing.assert_array_equal(first, again)
    assert first.tolist() != second_epoch.tolist()


def test_seed_and_generator():
    data = TensorDataset(np.arange(30))
    order = lambda loader: np.concatenate([b[0].numpy() for b in loader]).tolist()  # noqa: E731
    seeded = DataLoader(data, batch_size=7, shuffle=True, seed=3)
    epoch1, epoch2 = order(seeded), order(seeded)
    assert epoch1 != epoch2  # a seeded loader still reshuffles each epoch...
    assert order(DataLoader(data, 7, shuffle=True, seed=3)) == epoch1  # ...reproducibly
    gen_loader = DataLoader(data, 7, shuffle=True, generator=np.random.default_rng(3))
    assert order(gen_loader) == epoch1
    # The global generator is untouched by seeded loaders.
    pydl.manual_seed(0)
    expected = pydl._random.generator().permutation(30).tolist()
    pydl.manual_seed(0)
    order(seeded)
    assert order(DataLoader(data, 7, shuffle=True)) == expected


def test_tensordataset_fast_path_matches_per_item_collation():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((23, 4, 2)).astype(np.float32), rng.integers(0, 5, 23)
    data = TensorDataset(pydl.tensor(x), y)
    assert len(data) == 23 and data[3][0].shape == (4, 2) and int(data[3][1]) == y[3]
    fast = list(DataLoader(data, batch_size=5, shuffle=True, seed=1))
    slow = list(DataLoader(data, batch_size=5, shuffle=True, seed=1,
                           collate_fn=default_collate))
    assert len(fast) == len(slow) == 5
    for (fx, fy), (sx, sy) in zip(fast, slow):
        assert fx.dtype == sx.dtype == pydl.float32 and fy.dtype == sy.dtype == pydl.int64
        np.testing.assert_array_equal(fx.numpy(), sx.numpy())
        np.testing.assert_array_equal(fy.numpy(), sy.numpy())


def test_custom_collate_fn_and_bad_arguments():
    loader = DataLoader(Squares(5), batch_size=2, collate_fn=lambda items: len(items))
    assert list(loader) == [2, 2, 1]
    with pytest.raises(ValueError, match="same first dimension"):
        TensorDataset(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(Squares(3), batch_size=0)
    with pytest.raises(TypeError, match="dataset"):
        DataLoader(5)
    with pytest.raises(ValueError, match="not both"):
        DataLoader(Squares(3), shuffle=True, seed=1, generator=np.random.default_rng())
    with pytest.raises(NotImplementedError):
        len(Dataset())
