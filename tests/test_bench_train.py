"""bench/train.py times the same model on both sides: pydl, built from the same code
as the torch model and given its weights (through keras' layouts for mnist_fit),
computes the same outputs."""
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import pydl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import train  # noqa: E402


@pytest.mark.parametrize("name", [m for m in train.MODELS if m != "mnist_fit"])
def test_pydl_model_with_torch_weights_gives_torch_outputs(name, rng):
    build, make_data, _, _, _ = train.MODELS[name]
    x, _ = make_data(4, rng)
    torch.manual_seed(0)
    torch_model = build(torch)
    pydl_model, _ = train.make_step(pydl, name, (x, np.zeros(4, np.int64)), torch_model)
    expected = torch_model(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(pydl_model(pydl.tensor(x)).detach().numpy(), expected, rtol=1e-4,
                               atol=1e-5)


def test_keras_fit_model_gets_the_torch_weights_in_channels_last_layout(rng):
    x, y = train.MODELS["mnist_fit"][1](4, rng)
    torch.manual_seed(0)
    torch_model = train.mnist_cnn(torch)
    keras_model, _ = train.keras_fit_step((x, y), torch_model, batches=1)
    expected = torch_model(torch.tensor(x)).detach().numpy()
    got = keras_model.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)


def test_measure_reports_rates_and_where_the_step_goes(rng):
    row = train.measure("mlp", threads=1, blocks=1, seconds=0.05, rng=rng)
    assert row["pydl"] > 0 and row["torch"] > 0
    assert row["ratio"] == pytest.approx(row["pydl"] / row["torch"])
    assert set(row["families_ms"]) >= {"gemm", "optim", "loss"}
    assert row["step_ms"] >= sum(row["families_ms"].values())
