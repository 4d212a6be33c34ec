"""Datasets and the DataLoader that batches them into pydl Tensors.

A map-style Dataset has __getitem__(i) and __len__(). DataLoader draws indices (in
order, or a fresh permutation each epoch when shuffling), fetches the items and
collates them: arrays and tensors are stacked along a new first dimension, Python ints
become int64, floats float32, and tuples, lists and dicts are collated field by field.
A TensorDataset is batched by indexing its arrays with the whole batch of indices at
once, which gives the same batches without a Python loop over items.
"""
import math
import numbers

import numpy as np

from pydl import _random
from pydl.tensor import Tensor, _to_array


class Dataset:
    """A map-style dataset: subclasses define __getitem__(index) and __len__().

    >>> class Squares(pydl.data.Dataset):
    ...     def __len__(self):
    ...         return 4
    ...     def __getitem__(self, i):
    ...         return float(i), float(i * i)
    >>> [b[1].tolist() for b in pydl.data.DataLoader(Squares(), batch_size=2)]
    [[0.0, 1.0], [4.0, 9.0]]
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class TensorDataset(Dataset):
    """Item i is (t[i] for t in tensors); tensors (or arrays) must agree in their first
    dimension.

    >>> data = pydl.data.TensorDataset(pydl.arange(6.0).reshape(3, 2), pydl.tensor([0, 1, 0]))
    >>> len(data), data[1]
    (3, (tensor([2., 3.]), tensor(1)))
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        self.tensors = tuple(t if isinstance(t, Tensor) else Tensor(t) for t in tensors)
        for i, t in enumerate(self.tensors):
            if t.ndim == 0:
                raise ValueError(f"TensorDataset: tensor {i} is a scalar; each needs a first "
                                 "dimension to index")
        sizes = [t.shape[0] for t in self.tensors]
        if len(set(sizes)) != 1:
            raise ValueError(f"TensorDataset: tensors must have the same first dimension, got "
                             f"sizes {sizes} (shapes {[tuple(t.shape) for t in self.tensors]})")

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]

    def batch(self, indices):
        """The collated batch for an array of indices: one fancy-index per tensor."""
        return tuple(Tensor._wrap(t.data[indices]) for t in self.tensors)


class Subset(Dataset):
    """The items of dataset at the given indices, in that order.

    >>> part = pydl.data.Subset(pydl.data.TensorDataset(pydl.arange(10)), [7, 2])
    >>> len(part), part[0]
    (2, (tensor(7),))
    """

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, [int(i) for i in indices]

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


def random_split(dataset, lengths, generator=None):
    """Disjoint random Subsets of the given lengths (counts, or fractions that add up to
    1, the remainder going one each to the first subsets), drawn from `generator` (a
    numpy Generator) or pydl's global one.

    >>> pydl.manual_seed(0)
    >>> train, val = pydl.data.random_split(pydl.data.TensorDataset(pydl.arange(10)), [0.8, 0.2])
    >>> len(train), len(val), sorted(train.indices + val.indices) == list(range(10))
    (8, 2, True)
    """
    n = len(dataset)
    lengths = list(lengths)
    if all(isinstance(x, float) for x in lengths) and math.isclose(sum(lengths), 1.0):
        counts = [int(math.floor(n * x)) for x in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n or min(lengths, default=0) < 0:
        raise ValueError(f"random_split: lengths {lengths} must be non-negative and add up to "
                         f"the dataset's {n} items (or be fractions adding up to 1)")
    order = (generator if generator is not None else _random.generator()).permutation(n)
    bounds = np.cumsum([0] + lengths)
    return [Subset(dataset, order[a:b]) for a, b in zip(bounds, bounds[1:])]


def default_collate(items):
    """Stacks a list of samples into a batch (see the module docstring).

    >>> pydl.data.default_collate([(1.0, 2), (3.0, 4)])
    (tensor([1., 3.]), tensor([2, 4]))
    """
    first = items[0]
    if isinstance(first, Tensor):
        return Tensor._wrap(np.stack([item.data for item in items]))
    if isinstance(first, (np.ndarray, np.generic)):
        return Tensor._wrap(_to_array(np.stack(items), copy=False))
    if isinstance(first, (bool, np.bool_)):
        return Tensor._wrap(np.array(items, dtype=np.bool_))
    if isinstance(first, numbers.Integral):
        return Tensor._wrap(np.array(items, dtype=np.int64))
    if isinstance(first, numbers.Real):
        return Tensor._wrap(np.array(items, dtype=np.float32))
    if isinstance(first, (str, bytes)):
        return list(items)
    if isinstance(first, dict):
        return {key: default_collate([item[key] for item in items]) for key in first}
    if isinstance(first, (tuple, list)):
        lengths = {len(item) for item in items}
        if len(lengths) != 1:
            raise ValueError(f"default_collate: samples have different lengths {sorted(lengths)}")
        fields = [default_collate(list(field)) for field in zip(*items)]
        return tuple(fields) if isinstance(first, tuple) else fields
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; "
                    "pass collate_fn")


class DataLoader:
    """Iterates over a dataset in batches.

    shuffle draws a new order every epoch from `generator` (a numpy Generator), else
    from a generator seeded once with `seed`, else from pydl's global generator (so
    pydl.manual_seed fixes the order). A sampler (an iterable of indices with a length,
    such as DistributedSampler) gives the order instead. drop_last drops a last,
    smaller batch.

    >>> data = pydl.data.TensorDataset(pydl.randn(10, 3), pydl.arange(10))
    >>> loader = pydl.data.DataLoader(data, batch_size=4, shuffle=True, seed=0)
    >>> [y.shape for x, y in loader]
    [(4,), (4,), (2,)]
    >>> len(pydl.data.DataLoader(data, batch_size=4, drop_last=True))
    2
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None,
                 generator=None, seed=None, sampler=None):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"DataLoader: dataset must define __getitem__ and __len__, got "
                            f"{type(dataset).__name__}")
        if (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
                or batch_size < 1):
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got "
                             f"{batch_size!r}")
        if generator is not None and seed is not None:
            raise ValueError("DataLoader: pass generator or seed, not both")
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(f"DataLoader: generator must be a numpy.random.Generator, got "
                            f"{type(generator).__name__}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True exclude each other (the "
                             "sampler decides the order)")
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        self.generator = np.random.default_rng(seed) if seed is not None else generator

    def __len__(self):
        n = len(self.dataset if self.sampler is None else self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self):
        if self.sampler is not None:
            return np.fromiter(iter(self.sampler), np.int64)
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        generator = self.generator if self.generator is not None else _random.generator()
        return generator.permutation(n)

    def __iter__(self):
        order = self._order()
        # The one-index fast path, unless a subclass changed what an item is.
        fast = (isinstance(self.dataset, TensorDataset) and self.collate_fn is None
                and type(self.dataset).__getitem__ is TensorDataset.__getitem__)
        collate = self.collate_fn or default_collate
        for b in range(len(self)):
            indices = order[b * self.batch_size:(b + 1) * self.batch_size]
            if fast:
                yield self.dataset.batch(indices)
            else:
                yield collate([self.dataset[int(i)] for i in indices])


class DistributedSampler:
    """The indices of one rank's share of a dataset (torch.utils.data's sampler): every
    rank draws the same permutation (seeded with seed + epoch: call set_epoch(epoch)
    before each epoch for a new one) and takes every num_replicas-th index from
    position `rank`. Every rank gets the same number of indices: the order is padded
    with its own first indices to a multiple of num_replicas, or with drop_last cut
    to one. num_replicas and rank default to the initialized process group's."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        if num_replicas is None or rank is None:
            from pydl import distributed
            num_replicas = distributed.get_world_size() if num_replicas is None else \
                num_replicas
            rank = distributed.get_rank() if rank is None else rank
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive int, got "
                             f"{num_replicas!r}")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank must be in [0, {num_replicas - 1}], "
                             f"got {rank!r}")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        n = len(dataset)
        self.num_samples = n // num_replicas if drop_last else math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return self.num_samples

    def __iter__(self):
        n = len(self.dataset)
        order = np.random.default_rng(self.seed + self.epoch).permutation(n) if self.shuffle \
            else np.arange(n)
        if self.total_size > n:  # pad by repeating the order from its start
            order = np.resize(order, self.total_size)
        order = order[:self.total_size]
        return iter(order[self.rank::self.num_replicas].tolist())
