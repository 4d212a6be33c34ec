"""Benchmark suite "lowp": int8 and bfloat16 beside pydl's own float32, in one run.

Rows (impl "pydl" is the low-precision one; "fp32" is pydl's float32 kernel on the
same problem, so "vs fp32" is the speed-up):
  int8 gemm     _C.int8_gemm (u8 x s8 -> exact int32) against _C.gemm; flops 2 M N K
  bf16 gemm     _C.gemm_bf16 (bf16 operands, float32 sums) against _C.gemm, and torch.mm
                on bfloat16 tensors ("torch")
  int8 mlp      batch-256 inference of a 784-512-512-10 ReLU MLP quantized by
                pydl.quantization.quantize, against the float model, and torch's dynamic
                quantization of its Linear layers ("torch"), when it runs here
  int8 cnn      batch-256 inference of the Keras MNIST CNN (examples/mnist_cnn.py's
                network, NCHW), quantized, against float32
  bf16 cnn step one training step (forward, cross-entropy, backward, Adam) of that CNN
                at batch 64 under pydl.autocast, against float32, and torch's CPU bf16
                autocast step ("torch"; "torch fp32" is its float32 step)
Peaks measured here, beside the FMA loop of bench/run.py: a vpdpbusd loop (int8 GOP/s)
and a vdpbf16ps loop (bf16 GFLOP/s), each on zmm when the CPU has it. Every product
is checked against a reference before it is timed.
"""
from __future__ import annotations

import numpy as np

import pydl
import pydl.nn as nn
import pydl.nn.functional as F
from pydl import _C, quantization

try:
    import torch
except ImportError:
    torch = None

SUITE = "lowp"
GEMM_SIZES = [1024, 2048]
MLP = (784, 512, 512, 10)


def _peaks(bench):
    """The low-precision peaks on each thread count (the best of two tries)."""
    peaks = {}
    for t in bench.threads:
        bench.set_threads(t)
        row = {"fma": bench.peak.get(t)}
        for name, probe, feature in [("vnni", _C.vnni_peak_gops, "avx512_vnni"),
                                     ("bf16", _C.bf16_peak_gflops, "avx512_bf16")]:
            if _C.cpu_features()[feature] and _C.isa() == "avx512":
                row[name] = max(probe(t, 0.1 if bench.quick else 0.3) for _ in range(2))
        peaks[t] = row
        print(f"  peaks, {t} thread{'s' if t > 1 else ''}: " +
              ", ".join(f"{k} {v:.0f}" for k, v in row.items() if v))
    return peaks


def _gemms(bench, t, rng, rates):
    for n in GEMM_SIZES[:1] if bench.quick else GEMM_SIZES:
        shape, flops = f"{n}x{n}x{n}", 2.0 * n ** 3
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        w = rng.integers(-127, 128, (n, n)).astype(np.int8)
        x = rng.integers(0, 256, (n, n)).astype(np.uint8)
        rows, _ = _C.int8_pack_weights(w)
        got = _C.int8_gemm(rows, x)
        assert np.array_equal(got[:8], w[:8].astype(np.int64) @ x.astype(np.int64).T)
        got = _C.gemm_bf16(a, b)
        ref = _C.round_bf16(a[:8]).astype(np.float64) @ _C.round_bf16(b).astype(np.float64)
        assert np.allclose(got[:8], ref, rtol=1e-4, atol=1e-3 * np.sqrt(n))
        fp32 = bench.timeit(lambda: _C.gemm(a, b))
        for kernel, ours in [("int8 gemm", lambda: _C.int8_gemm(rows, x)),
                             ("bf16 gemm", lambda: _C.gemm_bf16(a, b))]:
            row = bench.add(SUITE, kernel, shape, "pydl", t, bench.timeit(ours), flops=flops)
            rates[(kernel, shape, t)] = row.gflops
            bench.add(SUITE, kernel, shape, "fp32", t, fp32, flops=flops)
        if torch is not None:
            ta, tb = torch.from_numpy(a).bfloat16(), torch.from_numpy(b).bfloat16()
            bench.add(SUITE, "bf16 gemm", shape, "torch", t,
                      bench.timeit(lambda: torch.mm(ta, tb)), flops=flops)


def _mlp(rng):
    pydl.manual_seed(0)
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(MLP[:-1], MLP[1:])):
        layers += [nn.Linear(fan_in, fan_out)] + ([nn.ReLU()] if i < len(MLP) - 2 else [])
    return nn.Sequential(*layers)


def _torch_copy(model):
    """The same pydl.nn.Sequential in torch (Linear, Conv2d, ReLU, MaxPool2d, Flatten)."""
    layers = []
    for m in model:
        name = type(m).__name__
        if name == "Linear":
            layer = torch.nn.Linear(m.in_features, m.out_features)
        elif name == "Conv2d":
            layer = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size)
        else:
            layers.append({"ReLU": torch.nn.ReLU, "Flatten": torch.nn.Flatten}.get(
                name, lambda: torch.nn.MaxPool2d(2))())
            continue
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(m.weight.detach().numpy()))
            layer.bias.copy_(torch.from_numpy(m.bias.detach().numpy()))
        layers.append(layer)
    return torch.nn.Sequential(*layers)


def _int8_inference(bench, t, label, model, x, calibration):
    quantized = quantization.quantize(model, calibration)
    xt = pydl.tensor(x)
    with pydl.no_grad():
        want = model(xt).numpy()
    got = quantized(xt).numpy()
    error = np.abs(got - want).max() / np.abs(want).max()
    assert error < 0.1, f"{label}: int8 is {error:.1%} off float32"
    shape = f"batch {len(x)}"

    def float_run():
        with pydl.no_grad():
            model(xt)
    bench.add(SUITE, label, shape, "pydl", t, bench.timeit(lambda: quantized(xt)),
              relative_error=round(float(error), 5))
    bench.add(SUITE, label, shape, "fp32", t, bench.timeit(float_run))
    return quantized


def _torch_dynamic_int8(bench, t, label, model, x):
    try:
        torch_model = torch.ao.quantization.quantize_dynamic(
            _torch_copy(model), {torch.nn.Linear}, dtype=torch.qint8)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            torch_model(xt)
    except (RuntimeError, AttributeError) as error:  # no quantized engine on this build
        print(f"  torch dynamic quantization does not run here: {error}")
        return

    def run():
        with torch.no_grad():
            torch_model(xt)
    bench.add(SUITE, label, f"batch {len(x)}", "torch", t, bench.timeit(run))


def _cnn():
    pydl.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10))


def _train_steps(bench, t, rng):
    x = rng.random((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    model = _cnn()
    opt = pydl.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = pydl.tensor(x), pydl.tensor(y)

    def step(bf16):
        with pydl.autocast("cpu", enabled=bf16):
            loss = F.cross_entropy(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    bench.add(SUITE, "bf16 cnn step", "batch 64", "pydl", t, bench.timeit(lambda: step(True)))
    bench.add(SUITE, "bf16 cnn step", "batch 64", "fp32", t, bench.timeit(lambda: step(False)))
    if torch is None:
        return
    torch_model = _torch_copy(model)
    torch_opt = torch.optim.Adam(torch_model.parameters(), lr=1e-3)
    txt, tyt = torch.from_numpy(x), torch.from_numpy(y)

    def torch_step(bf16):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(torch_model(txt), tyt)
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()
    bench.add(SUITE, "bf16 cnn step", "batch 64", "torch", t,
              bench.timeit(lambda: torch_step(True)))
    bench.add(SUITE, "bf16 cnn step", "batch 64", "torch fp32", t,
              bench.timeit(lambda: torch_step(False)))


def _section(bench, peaks, rates):
    lines = ["### Low precision: ISA and peaks measured in this run",
             "",
             f"int8 kernel `{_C.int8_kernel()}`, bf16 kernel `{_C.bf16_kernel()}`, "
             f"ISA `{_C.isa()}`; CPU features {_C.cpu_features()}.",
             "",
             "| threads | FMA GFLOP/s | vpdpbusd GOP/s | vdpbf16ps GFLOP/s | int8 / FMA peak | "
             "bf16 / FMA peak |",
             "|---|---|---|---|---|---|"]
    for t, row in peaks.items():
        fma, vnni, bf16 = row.get("fma"), row.get("vnni"), row.get("bf16")
        cells = [str(t)] + [f"{v:.0f}" if v else "" for v in (fma, vnni, bf16)]
        cells += [f"{v / fma:.2f}x" if v and fma else "" for v in (vnni, bf16)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| kernel | shape | threads | rate | of its own peak |", "|---|---|---|---|---|"]
    for (kernel, shape, t), rate in rates.items():
        peak = peaks[t].get("vnni" if kernel.startswith("int8") else "bf16")
        lines.append(f"| {kernel} | {shape} | {t} | {rate:.1f} G/s | "
                     f"{rate / peak:.0%} |" if peak else f"| {kernel} | {shape} | {t} | "
                     f"{rate:.1f} G/s | |")
    bench.sections.append("\n".join(lines))


def run(bench):
    rng = np.random.default_rng(0)
    peaks = _peaks(bench)
    rates = {}
    x_mlp = rng.standard_normal((256, MLP[0])).astype(np.float32)
    x_cnn = rng.random((256, 1, 28, 28)).astype(np.float32)
    mlp, cnn = _mlp(rng), _cnn()
    for t in bench.threads:
        bench.set_threads(t)
        _gemms(bench, t, rng, rates)
        _int8_inference(bench, t, "int8 mlp", mlp, x_mlp,
                        [pydl.tensor(x_mlp[i:i + 64]) for i in range(0, 256, 64)])
        if torch is not None:
            _torch_dynamic_int8(bench, t, "int8 mlp", mlp, x_mlp)
        _int8_inference(bench, t, "int8 cnn", cnn, x_cnn,
                        [pydl.tensor(x_cnn[i:i + 64]) for i in range(0, 256, 64)])
        _train_steps(bench, t, rng)
    _section(bench, peaks, rates)
