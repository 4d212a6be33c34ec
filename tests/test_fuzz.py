"""Fuzzing the kernel bindings (pydl._C and the CUDA kernels emulated on the host,
pydl._cuda_emu) and public layers with hypothesis: random shapes (0, 1, odd, large),
dtypes, strides, aliasing between outputs and inputs, and huge or nonsensical sizes.

Every case runs in a forked child (tests/isolated.py), so a crash fails its test
instead of ending the run. The outcome must be one of
  - a Python exception (ValueError, TypeError, MemoryError, OverflowError), or
  - the answer of a float64 NumPy reference computed here from the same arguments,
and never a crash, a hang, or an answer the reference disagrees with. The default run
takes about a minute; `pytest -m slow tests/test_fuzz.py` runs six times the examples.
"""
import math
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import isolated
from pydl import _C

emu = pytest.importorskip("pydl._cuda_emu", reason="built without PYDL_CUDA_EMULATION")

ALLOWED_ERRORS = {"ValueError", "TypeError", "MemoryError", "OverflowError"}


def is_clear_refusal(name, message):
    """A Python exception pydl raises on purpose: the errors above, or PyTorch's
    RuntimeError for operands of different dtypes."""
    return name in ALLOWED_ERRORS or (name == "RuntimeError" and "dtype" in message)

FAST = settings(max_examples=int(os.environ.get("PYDL_FUZZ_EXAMPLES", 100)), deadline=None,
                suppress_health_check=list(HealthCheck), derandomize=True, database=None)
SLOW = settings(FAST, max_examples=600, derandomize=False)

# A child may allocate this much: a huge (but valid) output is then a MemoryError, not
# a machine-wide out-of-memory kill.
CHILD_MEMORY = 6 << 30  # address space: the emulator's threads need their stacks too

# Outcomes over the session: cases, exceptions, matches; crashes and silent wrong
# answers fail their test (and are counted first).
COUNTS = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print(f"\nfuzz: {COUNTS['cases']} cases, {COUNTS['exception']} clear exceptions, "
          f"{COUNTS['equal']} equal to the float64 reference, {COUNTS['crash']} crashes, "
          f"{COUNTS['wrong']} silent wrong")


def judge(call, reference, rtol=1e-4, atol=1e-4):
    """Runs call() in a child; compares an answer with reference() (arrays or tuples of
    arrays, None entries skipped)."""
    COUNTS["cases"] += 1
    outcome = isolated.run(call, timeout=60, memory_limit=CHILD_MEMORY)
    if outcome.kind in ("crashed", "hung"):
        COUNTS["crash"] += 1
        pytest.fail(f"the call {outcome.kind}: {outcome.value}")
    if outcome.kind == "raised":
        name, message = outcome.value
        if not is_clear_refusal(name, message):
            COUNTS["crash"] += 1
            pytest.fail(f"unexpected exception {name}: {message}")
        COUNTS["exception"] += 1
        return
    try:
        expected = reference()
    except (ValueError, TypeError, IndexError) as error:
        COUNTS["wrong"] += 1
        pytest.fail(f"accepted arguments the reference refuses ({error})")
    got = outcome.value
    pairs = list(zip(got, expected)) if isinstance(expected, tuple) else [(got, expected)]
    for g, e in pairs:
        if e is None:
            continue
        g, e = np.asarray(g, np.float64), np.asarray(e, np.float64)
        scale = max(1.0, float(np.max(np.abs(e[np.isfinite(e)]), initial=0)))
        if g.shape != e.shape or not np.allclose(g, e, rtol=rtol, atol=atol * scale,
                                                 equal_nan=True):
            COUNTS["wrong"] += 1
            error = np.max(np.abs(g - e), initial=0) if g.shape == e.shape else "shape"
            pytest.fail(f"silent wrong answer: got {g.shape}, expected {e.shape}, largest "
                        f"error {error}")
    COUNTS["equal"] += 1


# ---- strategies -------------------------------------------------------------------

SIZES = st.sampled_from([0, 1, 1, 2, 3, 3, 5, 7, 8, 17])
HUGE = st.sampled_from([2 ** 31, 2 ** 32 + 1, 2 ** 40, 2 ** 62, 2 ** 63 - 1])
SEEDS = st.integers(0, 2 ** 32 - 1)


@st.composite
def arrays(draw, shape, dtype=np.float32):
    """An array of `shape`, usually float32 C-contiguous; sometimes another dtype, a
    strided or transposed view, or read-only."""
    rng = np.random.default_rng(draw(SEEDS))
    kind = draw(st.sampled_from(["plain"] * 6 + ["dtype", "strided", "transposed",
                                                  "readonly"]))
    if kind == "dtype":
        dtype = draw(st.sampled_from([np.float64, np.float16, np.int64, np.int32]))
    base = rng.standard_normal(tuple(shape)).astype(dtype) if np.dtype(dtype).kind == "f" \
        else rng.integers(-3, 4, tuple(shape)).astype(dtype)
    if kind == "strided" and base.ndim:
        wide = np.zeros(base.shape[:-1] + (2 * base.shape[-1],), base.dtype)
        wide[..., ::2] = base
        return wide[..., ::2]
    if kind == "transposed" and base.ndim >= 2:
        return np.ascontiguousarray(base.swapaxes(-1, -2)).swapaxes(-1, -2)
    if kind == "readonly":
        base.flags.writeable = False
    return base


def f64(a):
    return np.asarray(a, np.float64)


# ---- gemm ---------------------------------------------------------------------------

def gemm_reference(a, b, trans_a, trans_b, alpha, beta, c):
    A, B = f64(a), f64(b)
    if A.ndim != B.ndim or A.ndim not in (2, 3):
        raise ValueError("rank")
    A = A.swapaxes(-1, -2) if trans_a else A
    B = B.swapaxes(-1, -2) if trans_b else B
    out = alpha * (A @ B)
    return out + beta * f64(c) if c is not None else out


def gemm(data):
    batched = data.draw(st.booleans())
    M, N, K = (data.draw(SIZES) for _ in range(3))
    batch = (data.draw(SIZES),) if batched else ()
    trans_a, trans_b = data.draw(st.booleans()), data.draw(st.booleans())
    a = data.draw(arrays(batch + ((K, M) if trans_a else (M, K))))
    b = data.draw(arrays(batch + ((N, K) if trans_b else (K, N))))
    alpha = data.draw(st.sampled_from([1.0, -0.5, 2.0]))
    beta = data.draw(st.sampled_from([0.0, 1.0, 0.5]))
    # out: none, fresh, or sharing memory with an input (aliasing).
    out_kind = data.draw(st.sampled_from(["fresh", "fresh", "none", "alias_a", "alias_b"]))
    out = None
    if out_kind == "fresh" or (beta != 0 and out_kind == "none"):
        out = data.draw(arrays(batch + (M, N)))
    elif out_kind == "alias_a" and a.size and a.shape == batch + (M, N):
        out = a
    elif out_kind == "alias_b" and b.size and b.shape == batch + (M, N):
        out = b
    c = None if out is None else out.copy()
    module = data.draw(st.sampled_from([_C, emu]))
    if module is emu:
        target = np.zeros(batch + (M, N), np.float32) if out is None else out

        def call():
            emu.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=target)
            return target
    else:
        def call():
            return _C.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta,
                           out=out)
    if module is emu and out is None:
        c = np.zeros(batch + (M, N))
    judge(call, lambda: gemm_reference(a, b, trans_a, trans_b, alpha, beta,
                                       c if (beta != 0 or module is emu) and c is not None
                                       else None))


# ---- elementwise and row-wise --------------------------------------------------------

def erf(x):
    return np.vectorize(math.erf)(x) if x.size else x


UNARY = {"relu": lambda x: np.maximum(x, 0), "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
         "tanh": np.tanh, "gelu": lambda x: x * 0.5 * (1 + erf(x / math.sqrt(2)))}


def softmax64(x):
    z = x - x.max(axis=-1, keepdims=True) if x.size else x
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


ROWWISE = {"softmax": softmax64, "log_softmax": lambda x: np.log(softmax64(x))}


def elementwise_and_rowwise(data):
    shape = tuple(data.draw(SIZES) for _ in range(data.draw(st.integers(0, 3))))
    x = data.draw(arrays(shape))
    name = data.draw(st.sampled_from(sorted(UNARY) + sorted(ROWWISE)))
    reference = UNARY.get(name) or ROWWISE[name]
    module = data.draw(st.sampled_from([_C, emu]))
    forward = getattr(module, f"{name}_forward")
    if module is emu:
        out = x if data.draw(st.booleans()) and x.dtype == np.float32 else \
            np.empty(x.shape, np.float32)

        def call():
            forward(x, out=out)
            return out
    else:
        def call():
            return forward(x)

    def expected():
        if name in ROWWISE and x.ndim == 0:
            raise ValueError("row-wise ops need an axis")
        with np.errstate(all="ignore"):
            return reference(f64(x))
    judge(call, expected)


# ---- softmax cross-entropy -----------------------------------------------------------

def cross_entropy_reference(logits, target, reduction, ignore_index):
    z = f64(logits)
    if z.ndim != 2 or target.shape != (z.shape[0],):
        raise ValueError("shape")
    n, c = z.shape
    if c == 0 and n:
        raise ValueError("no classes")
    keep = target != ignore_index
    if np.any((target[keep] < 0) | (target[keep] >= c)):
        raise ValueError("class index")
    logp = np.log(softmax64(z)) if n else z
    losses = np.where(keep, -logp[np.arange(n), np.where(keep, target, 0)], 0) if n else \
        np.zeros(0)
    if reduction == "none":
        return losses.sum(), losses
    total = losses.sum()
    return (total / keep.sum() if keep.sum() else np.nan) if reduction == "mean" else total, \
        losses


def softmax_cross_entropy(data):
    n, c = data.draw(SIZES), data.draw(SIZES)
    logits = data.draw(arrays((n, c)))
    rng = np.random.default_rng(data.draw(SEEDS))
    target = rng.integers(-1 if data.draw(st.booleans()) else 0, max(c, 1) + 1, n)
    target[rng.random(n) < 0.2] = -100
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]))

    def call():
        loss, losses, _ = _C.softmax_cross_entropy(logits, target, reduction=reduction)
        return loss, losses
    judge(call, lambda: cross_entropy_reference(logits, target, reduction, -100))


# ---- convolution and pooling ----------------------------------------------------------

def padded(x, ph, pw, value=0.0):
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def conv_reference(x, w, stride, padding, dilation, groups):
    x, w = f64(x), f64(w)
    if x.ndim != 4 or w.ndim != 4 or groups < 1 or min(stride) < 1 or min(dilation) < 1 \
            or min(padding) < 0:
        raise ValueError("arguments")
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    if c == 0 or h == 0 or wd == 0 or co == 0 or kh == 0 or kw == 0 or c % groups or \
            co % groups or cg * groups != c:
        raise ValueError("channels")
    xp = padded(x, *padding)
    ho = (xp.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (xp.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError("kernel larger than the padded input")
    out = np.zeros((n, co, ho, wo))
    per = co // groups
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dilation[0]: i * dilation[0] + stride[0] * (ho - 1) + 1: stride[0],
                       j * dilation[1]: j * dilation[1] + stride[1] * (wo - 1) + 1: stride[1]]
            for g in range(groups):
                out[:, g * per:(g + 1) * per] += np.einsum(
                    "nchw,oc->nohw", patch[:, g * cg:(g + 1) * cg], w[g * per:(g + 1) * per, :, i, j])
    return out


def small_pair(data, low, high):
    return (data.draw(st.integers(low, high)), data.draw(st.integers(low, high)))


def conv2d_forward(data):
    groups = data.draw(st.sampled_from([1, 1, 2, 3]))
    c = data.draw(SIZES) * (groups if data.draw(st.booleans()) else 1)
    co = data.draw(st.sampled_from([1, 2, 3, 4, 6]))
    k = small_pair(data, 0, 4)
    x = data.draw(arrays((data.draw(SIZES), c, data.draw(SIZES), data.draw(SIZES))))
    w = data.draw(arrays((co, max(c // groups, 0) if data.draw(st.integers(0, 9)) else c + 1)
                         + k))
    stride = small_pair(data, 0, 3) if data.draw(st.integers(0, 9)) == 0 else small_pair(data, 1, 3)
    padding = small_pair(data, 0, 3)
    dilation = small_pair(data, 1, 3)
    if data.draw(st.integers(0, 9)) == 0:  # a huge size where arithmetic could overflow
        choice = data.draw(st.sampled_from(["stride", "padding", "dilation", "groups"]))
        big = data.draw(HUGE)
        stride, padding, dilation = {"stride": ((big, 1), padding, dilation),
                                     "padding": (stride, (big, 0), dilation),
                                     "dilation": (stride, padding, (big, 1)),
                                     "groups": (stride, padding, dilation)}[choice]
        groups = big if choice == "groups" else groups
    module = data.draw(st.sampled_from([_C, emu]))

    def call():
        if module is _C:
            return _C.conv2d_forward(x, w, stride=stride, padding=padding, dilation=dilation,
                                     groups=groups)
        shape = conv_reference(np.zeros(x.shape), np.zeros(w.shape), stride, padding,
                               dilation, groups).shape  # the size rule, here in the child
        out = np.empty(shape, np.float32)
        emu.conv2d_forward(x, w, stride=stride, padding=padding, dilation=dilation,
                           groups=groups, out=out)
        return out
    if max(padding) > 64:
        # The reference cannot pad by this much (nor could anyone hold the output):
        # the call must refuse it. Huge strides, dilations and groups the reference handles.
        outcome = isolated.run(call, memory_limit=CHILD_MEMORY)
        COUNTS["cases"] += 1
        assert outcome.kind == "raised" and outcome.value[0] in ALLOWED_ERRORS, outcome
        COUNTS["exception"] += 1
        return
    judge(call, lambda: conv_reference(x, w, stride, padding, dilation, groups))


def pool_reference(x, kernel, stride, padding, dilation, ceil_mode, kind):
    """PyTorch's max/avg pooling (count_include_pad) in float64; windows wholly in the
    padding give -inf for max (the kernels refuse those)."""
    x = f64(x)
    if x.ndim != 4 or x.shape[2] < 1 or x.shape[3] < 1 or min(kernel) < 1 or \
            min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or \
            any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError("arguments")
    out_hw = []
    for a in range(2):
        size, k, s, p, d = x.shape[2 + a], kernel[a], stride[a], padding[a], dilation[a]
        num = size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
        o = num // s + 1 if num >= 0 else 0
        if ceil_mode and o > 0 and (o - 1) * s >= size + p:
            o -= 1
        if o < 1:
            raise ValueError("empty output")
        out_hw.append(o)
    ho, wo = out_hw
    n, c, h, w = x.shape
    out = np.empty((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            rows = [i * stride[0] - padding[0] + t * dilation[0] for t in range(kernel[0])]
            cols = [j * stride[1] - padding[1] + t * dilation[1] for t in range(kernel[1])]
            rr = [r for r in rows if 0 <= r < h]
            cc = [q for q in cols if 0 <= q < w]
            if kind == "max":
                out[:, :, i, j] = x[:, :, rr][:, :, :, cc].max(axis=(2, 3)) if rr and cc \
                    else -np.inf
            else:
                r0, c0 = rows[0], cols[0]
                area = (min(r0 + kernel[0], h + padding[0]) - r0) * \
                    (min(c0 + kernel[1], w + padding[1]) - c0)
                out[:, :, i, j] = x[:, :, rr][:, :, :, cc].sum(axis=(2, 3)) / area
    return out


def pooling(data):
    x = data.draw(arrays((data.draw(SIZES), data.draw(SIZES), data.draw(SIZES),
                          data.draw(SIZES))))
    kind = data.draw(st.sampled_from(["max", "avg"]))
    kernel = small_pair(data, 0, 4)
    stride = small_pair(data, 1, 3)
    padding = small_pair(data, 0, 2)
    dilation = small_pair(data, 1, 3) if kind == "max" else (1, 1)
    ceil_mode = data.draw(st.booleans())
    huge = data.draw(st.integers(0, 7)) == 0
    if huge:
        big = data.draw(HUGE)
        kernel, padding = (big, kernel[1]), (big // 2, padding[1])
    module = data.draw(st.sampled_from([_C, emu]))
    geometry = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    if kind == "max":
        geometry["dilation"] = dilation

    def call():
        fn = getattr(module, f"{kind}_pool2d_forward")
        if module is _C:
            result = fn(x, **geometry)
            return result[0] if kind == "max" else result
        shape = (x.shape[0], x.shape[1]) + tuple(
            _C.max_pool2d_forward(np.zeros((1, 1) + x.shape[2:], np.float32), **{
                **geometry, "dilation": dilation})[0].shape[2:])
        out = np.empty(shape, np.float32)
        extra = {"indices": np.empty(shape, np.int64)} if kind == "max" else {}
        fn(x, **geometry, out=out, **extra)
        return out
    if huge:
        outcome = isolated.run(call, memory_limit=CHILD_MEMORY)
        COUNTS["cases"] += 1
        if outcome.kind == "ok":  # a window covering everything: the max or mean of all
            assert np.all(np.isfinite(outcome.value)), outcome
            COUNTS["equal"] += 1
            return
        assert outcome.kind == "raised" and outcome.value[0] in ALLOWED_ERRORS, outcome
        COUNTS["exception"] += 1
        return
    judge(call, lambda: pool_reference(x, kernel, stride, padding, dilation, ceil_mode, kind))


# ---- embedding, normalization, optimizers, dropout ---------------------------------

def embedding(data):
    V, D = data.draw(SIZES), data.draw(SIZES)
    weight = data.draw(arrays((V, D)))
    rng = np.random.default_rng(data.draw(SEEDS))
    shape = tuple(data.draw(SIZES) for _ in range(data.draw(st.integers(0, 2))))
    indices = rng.integers(-1 if data.draw(st.booleans()) else 0, V + 1, shape)
    backward = data.draw(st.booleans())
    if backward:
        num = data.draw(HUGE) if data.draw(st.integers(0, 5)) == 0 else V
        padding_idx = data.draw(st.sampled_from([-1, 0, 2, V, -3]))
        dy = data.draw(arrays(shape + (D,)))

        def call():
            return _C.embedding_backward(dy, indices, num, padding_idx)

        def expected():
            if num * D > 10 ** 7:
                raise ValueError("the reference builds no table this large")
            if np.any((indices < 0) | (indices >= num)) or not -1 <= padding_idx < num:
                raise ValueError("index")
            out = np.zeros((num, D))
            np.add.at(out, indices.reshape(-1), f64(dy).reshape(indices.size, D))
            if padding_idx >= 0:
                out[padding_idx] = 0
            return out
        judge(call, expected)
        return

    def call():
        return _C.embedding_forward(weight, indices)

    def expected():
        if np.any((indices < 0) | (indices >= V)):
            raise ValueError("index")
        return f64(weight)[indices]
    judge(call, expected)


def layer_and_batch_norm(data):
    rows, cols = data.draw(SIZES), data.draw(SIZES)
    x = data.draw(arrays((rows, cols)))
    eps = data.draw(st.sampled_from([1e-5, 1e-5, 0.0, -1.0, float("inf"), float("nan")]))
    if data.draw(st.booleans()):
        def call():
            return _C.layer_norm_forward(x, None, None, eps)[0]

        def expected():
            if not (0 < eps < math.inf):
                raise ValueError("eps")
            v = f64(x)
            mean = v.mean(axis=1, keepdims=True) if cols else np.zeros((rows, 1))
            var = v.var(axis=1, keepdims=True) if cols else np.zeros((rows, 1))
            return (v - mean) / np.sqrt(var + eps)
        judge(call, expected, rtol=1e-3, atol=1e-3)
        return
    momentum = data.draw(st.sampled_from([0.1, 0.0, 1.0, float("nan")]))
    stats = np.stack([np.zeros(cols, np.float32), np.ones(cols, np.float32)])
    running_mean, running_var = (stats[0], stats[0]) if data.draw(st.integers(0, 5)) == 0 \
        else (stats[0].copy(), stats[1].copy())

    def call():
        return _C.batch_norm_forward(x, None, None, running_mean, running_var, True, momentum,
                                     eps)[0]

    def expected():
        if not (0 < eps < math.inf) or not math.isfinite(momentum) or rows <= 1 or \
                running_mean is running_var:
            raise ValueError("arguments")
        v = f64(x)
        return (v - v.mean(axis=0)) / np.sqrt(v.var(axis=0) + eps)
    judge(call, expected, rtol=1e-3, atol=1e-3)


def sgd_step(data):
    n = data.draw(SIZES)
    param, grad = data.draw(arrays((n,))), data.draw(arrays((n,)))
    lr = data.draw(st.sampled_from([0.1, 0.0, -0.1, float("nan")]))
    momentum = data.draw(st.sampled_from([0.0, 0.9, -0.5]))
    buffer_kind = data.draw(st.sampled_from(["fresh", "param", "grad", "none"]))
    buffer = {"fresh": np.ones(n, np.float32), "param": param, "grad": grad,
              "none": None}[buffer_kind]
    module = data.draw(st.sampled_from([_C, emu]))
    p0 = f64(param).copy()
    b0 = None if buffer is None else f64(buffer).copy()

    def call():
        module.sgd_step(param, grad, buffer, lr=lr, momentum=momentum)
        return param

    def expected():
        if not lr >= 0 or momentum < 0 or (momentum and buffer is None) or \
                (n and buffer is not None and momentum and (buffer is param or buffer is grad)):
            raise ValueError("arguments")
        g = f64(grad)
        if momentum:
            g = momentum * b0 + g
        return p0 - lr * g
    judge(call, expected)


def dropout(data):
    shape = tuple(data.draw(SIZES) for _ in range(data.draw(st.integers(0, 3))))
    x = data.draw(arrays(shape))
    p = data.draw(st.sampled_from([0.0, 0.5, 0.9, 1.0, -0.1, 1.5, float("nan")]))

    def call():
        y, mask = _C.dropout_forward(x, p, 1, 2)
        return y, mask

    def expected():
        if not 0 <= p <= 1:
            raise ValueError("p")
        mask = _C.dropout_mask(list(x.shape), p, 1, 2)
        scale = 0.0 if p == 1 else 1 / (1 - p)
        return f64(x) * mask * scale, mask
    judge(call, expected)


# ---- public layers --------------------------------------------------------------------

def public_layers(data):
    import pydl
    import pydl.nn.functional as F
    n, c, h, w = (data.draw(SIZES) for _ in range(4))
    x = data.draw(arrays((n, c, h, w), dtype=data.draw(st.sampled_from([np.float32,
                                                                        np.float64]))))
    layer = data.draw(st.sampled_from(["linear", "max_pool", "relu", "softmax"]))
    if layer == "linear":
        weight = data.draw(arrays((data.draw(SIZES), w)))

        def call():
            return F.linear(pydl.tensor(x), pydl.tensor(weight)).numpy()
        judge(call, lambda: f64(x) @ f64(weight).T)
    elif layer == "max_pool":
        k, s, p, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), \
            data.draw(st.integers(0, 1)), data.draw(st.integers(1, 2))

        def call():
            return F.max_pool2d(pydl.tensor(x), k, s, p, d).numpy()
        judge(call, lambda: pool_reference(x, (k, k), (s, s), (p, p), (d, d), False, "max"))
    elif layer == "relu":
        judge(lambda: F.relu(pydl.tensor(x)).numpy(), lambda: np.maximum(f64(x), 0))
    else:
        def expected():
            with np.errstate(all="ignore"):
                return softmax64(f64(x))
        judge(lambda: F.softmax(pydl.tensor(x), dim=-1).numpy(), expected)


# ---- the properties, at two budgets ----------------------------------------------------

PROPERTIES = [gemm, elementwise_and_rowwise, softmax_cross_entropy, conv2d_forward, pooling, embedding, layer_and_batch_norm, sgd_step, dropout, public_layers]


def run_property(prop, budget):
    settings(budget)(given(data=st.data())(prop))()


@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.__name__)
def test_fuzz(prop):
    run_property(prop, FAST)


@pytest.mark.slow
@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.__name__)
def test_fuzz_with_a_larger_budget(prop):
    """The same properties with 6 times the examples, not derandomized."""
    run_property(prop, SLOW)


# ---- file readers -------------------------------------------------------------------

def _reader_seeds(tmp):
    """(reader, bytes of a valid file) for the checkpoint, IDX (raw and gzipped) and
    CIFAR-10 batch readers."""
    import gzip
    import pickle
    import struct
    import pydl
    from pydl.datasets import cifar10
    from pydl.datasets._idx import load_idx
    checkpoint = os.path.join(tmp, "seed.pydl")
    pydl.save({"w": np.arange(12, dtype=np.float32).reshape(3, 4), "step": 3, "name": "x"},
              checkpoint)
    idx = bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 3, 5) + bytes(range(15))
    batch = pickle.dumps({b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072),
                          b"labels": [1, 7]}, protocol=2)

    def read_path(loader, suffix):
        def read(data):
            path = os.path.join(tmp, f"case{suffix}")
            with open(path, "wb") as f:
                f.write(data)
            loader(path)
        return read
    with open(checkpoint, "rb") as f:
        yield "checkpoint", read_path(pydl.load, ".pydl"), f.read()
    yield "idx", read_path(load_idx, ".idx"), idx
    yield "idx.gz", read_path(load_idx, ".idx.gz"), gzip.compress(idx)
    yield "cifar", lambda data: cifar10.read_batch(data, "case"), batch


MUTATIONS = st.lists(st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "repeat"]),
                               st.integers(0, 10 ** 6), st.integers(0, 255)),
                     min_size=1, max_size=4)


def mutate(data, mutations):
    data = bytearray(data)
    for kind, at, value in mutations:
        if not data:
            break
        i = at % len(data)
        if kind == "flip":
            data[i] ^= 1 << (value % 8)
        elif kind == "set":
            data[i] = value
        elif kind == "cut":
            del data[i:]
        elif kind == "insert":
            data[i:i] = bytes([value]) * (1 + value % 7)
        else:  # repeat a span: memo references, repeated members
            data[i:i] = data[i:i + value]
    return bytes(data)


@pytest.mark.parametrize("which", ["checkpoint", "idx", "idx.gz", "cifar"])
def test_readers_on_damaged_files(which, tmp_path):
    """Damaged files give ValueError (or, when the damage is harmless, a load), within
    64 MiB of memory and 20 s: never a crash, a hang, a MemoryError or another error."""
    reader, seed = next((r, s) for name, r, s in _reader_seeds(str(tmp_path)) if name == which)

    @given(mutations=MUTATIONS)
    @settings(FAST, max_examples=int(os.environ.get("PYDL_FUZZ_EXAMPLES", 100)) // 2)
    def check(mutations):
        data = mutate(seed, mutations)
        COUNTS["cases"] += 1
        outcome = isolated.run(reader, data, timeout=20, memory_limit=64 << 20)
        if outcome.kind in ("crashed", "hung"):
            COUNTS["crash"] += 1
        assert outcome.kind in ("ok", "raised"), outcome
        if outcome.kind == "raised":
            assert outcome.value[0] == "ValueError", outcome
            COUNTS["exception"] += 1
        else:
            COUNTS["equal"] += 1  # read without complaint (the damage hit no checked field)
    check()
