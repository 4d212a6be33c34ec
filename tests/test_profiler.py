"""pydl.profiler: every kernel call of a training step is recorded with its shapes,
time and rate; the table, the family grouping and the Chrome trace agree with them."""
import json

import numpy as np
import pytest

import pydl
import pydl.nn as nn
import pydl.nn.functional as F
from pydl import _C, _kernels
from pydl.profiler import kernel_family, profile, record_function


def _cnn_step(rng, foreach=None):
    pydl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 3))
    opt = pydl.optim.Adam(model.parameters(), lr=1e-3, foreach=foreach)
    x = pydl.tensor(rng.standard_normal((8, 1, 12, 12)), dtype="float32")
    y = pydl.tensor(rng.integers(0, 3, 8))

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def test_a_training_step_records_each_kernel_call(rng):
    step = _cnn_step(rng, foreach=False)  # one optimizer kernel call per parameter
    with profile() as prof:
        step()
    names = [call.name for call in prof.calls]
    assert names.count("conv2d_forward") == 1 and names.count("conv2d_backward") == 1
    assert names.count("adam_step") == 4  # conv and linear weight and bias
    assert {"gemm", "relu_forward", "relu_backward", "max_pool2d_forward",
            "max_pool2d_backward", "softmax_cross_entropy"} <= set(names)
    conv = next(call for call in prof.calls if call.name == "conv2d_forward")
    assert conv.shapes.startswith("(8, 1, 12, 12) (4, 1, 3, 3)")
    starts = [call.start for call in prof.calls]
    assert starts == sorted(starts)
    assert 0 < prof.kernel_seconds < prof.wall_seconds
    assert prof.outside_seconds == pytest.approx(prof.wall_seconds - prof.kernel_seconds)
    with profile() as prof:
        _cnn_step(rng)()  # by default one multi-tensor call updates all four
    (adam,) = [call for call in prof.calls if call.name == "adam_step"]
    assert adam.bytes == 4 * 4 * (36 + 4 + 300 + 3)  # param, grad, exp_avg, exp_avg_sq


def test_gemm_rate_counts_two_flops_per_multiply_add(rng):
    a = pydl.tensor(rng.standard_normal((64, 48)), dtype="float32")
    b = pydl.tensor(rng.standard_normal((48, 32)), dtype="float32")
    with profile() as prof:
        a @ b
    (call,) = prof.calls
    assert call.flops == 2 * 64 * 48 * 32 and call.bytes is None
    (row,) = prof.key_averages()
    rate = float(row["rate"].split()[0])
    assert row["rate"].endswith("GFLOP/s")
    assert rate == pytest.approx(call.flops / call.seconds / 1e9, rel=6e-3)  # 3 digits shown


def test_key_averages_group_sum_and_sort(rng):
    x = pydl.tensor(rng.standard_normal((32, 16)), dtype="float32")
    z = pydl.tensor(rng.standard_normal((8, 4)), dtype="float32")
    with profile() as prof:
        for _ in range(3):
            x.relu()
        z.relu()
        z.sigmoid()
    by_shape = prof.key_averages(group_by="shape", sort_by="calls")
    assert [(r["name"], r["calls"]) for r in by_shape][0] == ("relu_forward", 3)
    assert sum(r["calls"] for r in by_shape) == 5 and len(by_shape) == 3
    by_name = {r["name"]: r for r in prof.key_averages(group_by="name")}
    assert by_name["relu_forward"]["calls"] == 4
    assert by_name["relu_forward"]["total"] == pytest.approx(
        sum(c.seconds for c in prof.calls if c.name == "relu_forward"))
    (family,) = prof.key_averages(group_by="family")
    assert family["name"] == "elementwise" and family["calls"] == 5
    totals = [r["total"] for r in prof.key_averages(sort_by="total")]
    assert totals == sorted(totals, reverse=True)
    with pytest.raises(ValueError, match="sort_by"):
        prof.key_averages(sort_by="speed")
    with pytest.raises(ValueError, match="group_by"):
        prof.table(group_by="layer")


def test_table_lists_kernels_and_the_time_outside_them(rng):
    step = _cnn_step(rng)
    with profile() as prof:
        step()
    text = prof.table()
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["kernel", "shapes", "calls"]
    assert any(line.startswith("conv2d_backward") for line in lines)
    assert any(line.startswith("outside kernels") for line in lines)
    assert lines[-1].startswith("wall")
    assert len(prof.table(row_limit=2).splitlines()) == 2 + 2 + 1 + 3  # header, rule, rows, rule, footer
    families = prof.table(group_by="family")
    assert {"conv", "gemm", "pool", "loss", "optim", "elementwise"} <= {
        line.split()[0] for line in families.splitlines()[2:-4]}


def test_chrome_trace_has_one_complete_event_per_call_and_range(rng, tmp_path):
    step = _cnn_step(rng)
    with profile() as prof:
        with record_function("step"):
            step()
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(path)
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    kernels = [e for e in events if e["cat"] != "range"]
    assert len(kernels) == len(prof.calls)
    assert all(e["ph"] == "X" and e["dur"] > 0 and e["ts"] >= 0 for e in events)
    (step_range,) = [e for e in events if e["cat"] == "range"]
    assert step_range["name"] == "step"
    # every kernel ran inside the step range
    assert all(step_range["ts"] <= e["ts"] and e["ts"] + e["dur"] <= step_range["ts"]
               + step_range["dur"] + 1 for e in kernels)
    assert list(prof.ranges()) == ["step"]
    assert {e["cat"] for e in kernels} >= {"conv", "gemm", "optim"}


def test_outside_a_profile_the_kernels_are_called_directly(rng):
    if _kernels.DEBUG:
        pytest.skip("PYDL_DEBUG times every call")
    with profile():
        assert _kernels.cpu.gemm is not _C.gemm
        with profile() as inner:  # nested profiles both record
            pydl.randn(4, 4).relu()
        assert [c.name for c in inner.calls] == ["relu_forward"]
    assert _kernels.cpu.gemm is _C.gemm and _kernels.cpu.relu_forward is _C.relu_forward


def test_profiled_results_equal_unprofiled(rng):
    a = rng.standard_normal((33, 17)).astype(np.float32)
    b = rng.standard_normal((17, 9)).astype(np.float32)
    plain = (pydl.tensor(a) @ pydl.tensor(b)).numpy()
    with profile():
        profiled = (pydl.tensor(a) @ pydl.tensor(b)).numpy()
    np.testing.assert_array_equal(plain, profiled)


def test_kernel_families_name_the_csrc_files():
    assert {name: kernel_family(name) for name in ("gemm", "conv2d_forward", "avg_pool2d_backward",
                                                    "softmax_cross_entropy", "sgd_step",
                                                    "dropout_mask", "embedding_backward",
                                                    "layer_norm_forward", "rnn_backward",
                                                    "gelu_forward", "gemm_bf16",
                                                    "int8_linear")} == {
        "gemm": "gemm", "conv2d_forward": "conv", "avg_pool2d_backward": "pool",
        "softmax_cross_entropy": "loss", "sgd_step": "optim", "dropout_mask": "dropout",
        "embedding_backward": "embedding", "layer_norm_forward": "norm",
        "rnn_backward": "rnn", "gelu_forward": "elementwise", "gemm_bf16": "bf16",
        "int8_linear": "quant"}
    for name in _kernels.KERNEL_NAMES:  # every kernel has a family with a source file
        assert kernel_family(name) in {"gemm", "conv", "pool", "loss", "optim", "dropout",
                                       "embedding", "norm", "rnn", "elementwise", "bf16", "quant"}
