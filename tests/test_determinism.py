"""Seeded CPU runs repeat bit for bit on any number of threads, and
pydl.use_deterministic_algorithms(True) refuses the kernels that cannot."""
import numpy as np
import pytest

import pydl
import pydl.nn as nn
import pydl.nn.functional as F
from conftest import kernel_settings
from pydl import _C


def mnist_cnn_steps(threads, steps=3):
    """The flattened parameters after `steps` Adam steps of a small MNIST CNN, seeded."""
    with kernel_settings(_C.isa(), threads):
        pydl.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Dropout(0.25), nn.Linear(32 * 5 * 5, 64), nn.ReLU(),
                              nn.BatchNorm1d(64), nn.Linear(64, 10))
        opt = pydl.optim.Adam(model.parameters(), lr=1e-3)
        x = pydl.randn(64, 1, 28, 28)
        y = pydl.randint(0, 10, (64,))
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


def test_training_steps_are_bitwise_equal_on_1_and_2_threads():
    one, two, again = mnist_cnn_steps(1), mnist_cnn_steps(2), mnist_cnn_steps(2)
    assert np.array_equal(one, two)
    assert np.array_equal(two, again)


@pytest.mark.parametrize("shape", [(64, 1, 28, 28, 32), (64, 32, 13, 13, 64), (5, 3, 40, 40, 8),
                                   (33, 8, 12, 12, 4)])
def test_conv_weight_gradient_is_bitwise_equal_on_any_thread_count(shape):
    n, c, h, w, co = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((co, c, 3, 3)).astype(np.float32)
    dy = rng.standard_normal(_C.conv2d_forward(x, weight).shape).astype(np.float32)
    results = []
    for threads in (1, 2, 3, 2):
        with kernel_settings(_C.isa(), threads):
            results.append(_C.conv2d_backward(dy, x, weight)[1])
    for r in results[1:]:
        assert np.array_equal(results[0], r)
    expected = np.einsum("nohw,nchw->oc", dy.astype(np.float64),
                         x[:, :, :dy.shape[2], :dy.shape[3]].astype(np.float64))
    np.testing.assert_allclose(results[0][:, :, 0, 0], expected, rtol=1e-4, atol=1e-3)


def test_use_deterministic_algorithms_refuses_atomic_cuda_kernels(fake_cuda):
    assert not pydl.are_deterministic_algorithms_enabled()
    x = pydl.randn(2, 3, 8, 8, device="cuda", requires_grad=True)
    conv = nn.Conv2d(3, 4, 3).to("cuda")
    pydl.use_deterministic_algorithms(True)
    try:
        assert pydl.are_deterministic_algorithms_enabled()
        out = conv(x).sum()
        with pytest.raises(RuntimeError, match="conv2d_backward .grad_weight. on cuda does not "
                                               "have a deterministic implementation"):
            out.backward()
        pydl.use_deterministic_algorithms(True, warn_only=True)
        with pytest.warns(UserWarning, match="deterministic"):
            conv(x).sum().backward()
        with pytest.raises(RuntimeError, match="embedding_backward"):
            pydl.use_deterministic_algorithms(True)
            emb = nn.Embedding(5, 3).to("cuda")
            emb(pydl.tensor(np.array([1, 2]), device="cuda")).sum().backward()
    finally:
        pydl.use_deterministic_algorithms(False)
    # The CPU kernels are deterministic already: nothing refuses there.
    pydl.use_deterministic_algorithms(True)
    try:
        nn.Conv2d(3, 4, 3)(pydl.randn(2, 3, 8, 8, requires_grad=True)).sum().backward()
    finally:
        pydl.use_deterministic_algorithms(False)
