"""pydl.save_safetensors / pydl.load_safetensors both ways with PyTorch's safetensors."""
import numpy as np
import pytest

import pydl
import pydl.nn as nn

safetensors = pytest.importorskip("safetensors")


def Net(module):
    """Conv, batch norm, an LSTM and a linear head (weights and buffers of every kind),
    built from `module`: pydl.nn or torch.nn."""

    class Net(module.Module):
        def __init__(self):
            super().__init__()
            self.conv = module.Conv2d(2, 4, 3, padding=1)
            self.norm = module.BatchNorm2d(4)
            self.lstm = module.LSTM(4 * 5, 6, batch_first=True)
            self.head = module.Linear(6, 3)

        def forward(self, x):                      # (N, 2, 5, 5)
            h = self.norm(self.conv(x)).relu()     # (N, 4, 5, 5)
            h = h.permute(0, 3, 1, 2).reshape(x.shape[0], 5, 20)
            output, _ = self.lstm(h)
            return self.head(output[:, -1])
    return Net()


def test_a_file_written_by_torch_gives_pydl_torchs_outputs(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    torch.manual_seed(0)
    theirs = Net(torch.nn)
    theirs.train()
    with torch.no_grad():                      # running statistics away from (0, 1)
        theirs(torch.randn(8, 2, 5, 5) * 3 + 1)
    theirs.eval()
    path = tmp_path / "torch.safetensors"
    save_file(theirs.state_dict(), str(path))

    ours = Net(nn).eval()
    state = pydl.load_safetensors(path)
    assert set(state) == set(theirs.state_dict())
    ours.load_state_dict(state)
    x = np.random.default_rng(1).standard_normal((3, 2, 5, 5)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    with pydl.no_grad():
        got = ours(pydl.tensor(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert int(ours.norm.num_batches_tracked.numpy()) == 1


def test_a_file_written_by_pydl_loads_in_torch_and_back(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    pydl.manual_seed(2)
    ours = Net(nn)
    path = tmp_path / "pydl.safetensors"
    pydl.save_safetensors(ours.state_dict(), path, metadata={"epoch": "3"})
    loaded = load_file(str(path))
    for name, value in ours.state_dict().items():
        assert loaded[name].dtype == getattr(torch, str(value.dtype))
        np.testing.assert_array_equal(loaded[name].numpy(), value.numpy())
    theirs = Net(torch.nn)
    theirs.load_state_dict(loaded)             # shapes and key names as torch's
    back = pydl.load_safetensors(path)
    assert set(back) == set(ours.state_dict()) and back["norm.num_batches_tracked"].ndim == 0
    with safetensors.safe_open(str(path), "np") as f:
        assert f.metadata() == {"epoch": "3"}


def test_bad_keys_are_refused(tmp_path):
    with pytest.raises(TypeError, match="keys must be strings"):
        pydl.save_safetensors({1: np.zeros(2, np.float32)}, tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir())        # nothing half-written left behind
