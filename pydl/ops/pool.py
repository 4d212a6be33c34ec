"""2-D pooling, NCHW: max (with argmax indices), average, adaptive average.

float32 runs the compiled kernels; float64 the NumPy forms below. Output size
per axis (PyTorch's rule, pydl._C.pool_output_size, the kernels' own):
    out = floor_or_ceil((H + 2p - d(k-1) - 1) / s) + 1, and in ceil_mode the last
    window is dropped when it would start at or past H + p.
Max pooling's indices are ih * W + iw within each (n, c) plane. Average pooling
divides by the window clipped to the padded input (count_include_pad) or by
the number of input elements it covers.
"""
import numpy as np

from pydl._C import pool2d_output_hw
from pydl._device import kernels_for
from pydl.autograd import Function
from pydl.ops.common import contiguous, require_host, xp_of
from pydl.ops.conv import add_windows, windows


def check_pool_args(name, shape, kernel, stride, padding, dilation, ceil_mode):
    """The output (H_out, W_out); ValueError naming the shape for bad arguments."""
    where = (f"input {tuple(shape)}, kernel_size {kernel}, stride {stride}, padding {padding}, "
             f"dilation {dilation}")
    if len(shape) != 4:
        raise ValueError(f"{name}: input must be 4-D (N, C, H, W), got shape {tuple(shape)}")
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"{name}: kernel_size, stride and dilation must be >= 1: {where}")
    if min(padding) < 0 or any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"{name}: padding must be >= 0 and at most half the kernel size: "
                         f"{where}")
    out = pool2d_output_hw(shape, kernel, stride, padding, dilation, ceil_mode)
    if min(out) < 1:
        raise ValueError(f"{name}: the output would be empty (kernel larger than the padded "
                         f"input): {where}")
    for axis in range(2):
        o = _padding_only_window(out[axis], shape[2 + axis], kernel[axis], stride[axis],
                                 padding[axis], dilation[axis])
        if o is not None and shape[0] * shape[1]:
            raise ValueError(f"{name}: the window of output {('row', 'column')[axis]} {o} lies "
                             f"wholly in the padding (its dilated taps step over the input); "
                             f"use less padding or dilation: {where}")
    return out


def _padding_only_window(out, size, kernel, stride, padding, dilation):
    """The first output position whose window (taps o*s - p + t*d, t < k) holds no input
    position in [0, size), or None. Only windows starting left of the input can be empty,
    so PyTorch's -inf (and an index outside the window) is refused, as the kernels do."""
    o = 0
    while o < out and o * stride < padding:
        start = o * stride - padding
        first_tap = -(start // dilation)  # ceil(-start / dilation)
        if first_tap >= kernel or start + first_tap * dilation >= size:
            return o
        o += 1
    return None


def _padded(x, value, padding, extent):
    """x padded by `padding` before and up to `extent` rows/columns in all."""
    h, w = x.shape[2:]
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, max(0, extent[0] - h - ph)),
                      (pw, max(0, extent[1] - w - pw))), constant_values=value)


def _extent(out, kernel, stride, dilation):
    return tuple((o - 1) * s + d * (k - 1) + 1 for o, k, s, d in zip(out, kernel, stride, dilation))


def _max_reference(x, kernel, stride, padding, dilation, out):
    xpad = _padded(x, -np.inf, padding, _extent(out, kernel, stride, dilation))
    win = windows(xpad, kernel, stride, dilation, out)           # (N, C, KH, KW, Ho, Wo)
    flat = win.reshape(win.shape[:2] + (-1,) + out)
    arg = flat.argmax(axis=2)                                     # first max; NaN wins
    values = np.take_along_axis(flat, arg[:, :, None], axis=2)[:, :, 0]
    k, l = np.divmod(arg, kernel[1])
    ih = np.arange(out[0])[:, None] * stride[0] - padding[0] + k * dilation[0]
    iw = np.arange(out[1])[None, :] * stride[1] - padding[1] + l * dilation[1]
    return values, (ih * x.shape[3] + iw).astype(np.int64)


class MaxPool2d(Function):
    """Settings: kernel, stride, padding, dilation (pairs), ceil_mode, and
    indices_out: None, or a list that receives the argmax indices (int64, ih * W + iw)."""

    def forward(self, x):
        self.input_shape = x.shape
        if x.dtype == np.float32:
            out, self.indices = kernels_for(x).max_pool2d_forward(
                contiguous(x), kernel_size=self.kernel, stride=self.stride, padding=self.padding,
                dilation=self.dilation, ceil_mode=self.ceil_mode)
            return self._keep(out)
        require_host(x, "max_pool2d")
        out_hw = pool2d_output_hw(x.shape, self.kernel, self.stride, self.padding, self.dilation,
                                  self.ceil_mode)
        out, self.indices = _max_reference(x, self.kernel, self.stride, self.padding,
                                           self.dilation, out_hw)
        return self._keep(out)

    def _keep(self, out):
        if self.indices_out is not None:
            self.indices_out.append(self.indices)
        return out

    def backward(self, g):
        if g.dtype == np.float32:
            return (kernels_for(g).max_pool2d_backward(
                contiguous(g), self.indices, self.input_shape, kernel_size=self.kernel,
                stride=self.stride, padding=self.padding, dilation=self.dilation,
                ceil_mode=self.ceil_mode),)
        n, c, h, w = self.input_shape
        grad = np.zeros((n * c, h * w), dtype=g.dtype)
        rows = np.repeat(np.arange(n * c), g.shape[2] * g.shape[3])
        np.add.at(grad, (rows, self.indices.reshape(-1)), g.reshape(-1))
        return (grad.reshape(self.input_shape),)



def _avg_divisors(size, out, kernel, stride, padding, count_include_pad):
    """Per output position along one axis: the divisor's factor for that axis."""
    start = np.arange(out) * stride - padding
    end = np.minimum(start + kernel, size + padding)
    if count_include_pad:
        return end - start
    return np.maximum(np.minimum(end, size) - np.maximum(start, 0), 0)


def _avg_divisor(shape, out, kernel, stride, padding, count_include_pad):
    dh, dw = (_avg_divisors(shape[2 + a], out[a], kernel[a], stride[a], padding[a],
                            count_include_pad) for a in range(2))
    return np.maximum(dh[:, None] * dw[None, :], 1)


class AvgPool2d(Function):
    """Settings: kernel, stride, padding (pairs), ceil_mode, count_include_pad."""

    def forward(self, x):
        self.input_shape = x.shape
        if x.dtype == np.float32:
            return kernels_for(x).avg_pool2d_forward(
                contiguous(x), kernel_size=self.kernel, stride=self.stride, padding=self.padding,
                ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad)
        require_host(x, "avg_pool2d")
        out = pool2d_output_hw(x.shape, self.kernel, self.stride, self.padding, (1, 1),
                               self.ceil_mode)
        xpad = _padded(x, 0.0, self.padding, _extent(out, self.kernel, self.stride, (1, 1)))
        sums = windows(xpad, self.kernel, self.stride, (1, 1), out).sum(axis=(2, 3))
        return sums / _avg_divisor(x.shape, out, self.kernel, self.stride, self.padding,
                                   self.count_include_pad)

    def backward(self, g):
        if g.dtype == np.float32:
            return (kernels_for(g).avg_pool2d_backward(
                contiguous(g), self.input_shape, kernel_size=self.kernel, stride=self.stride,
                padding=self.padding, ceil_mode=self.ceil_mode,
                count_include_pad=self.count_include_pad),)
        out = g.shape[2:]
        n, c, h, w = self.input_shape
        extent = _extent(out, self.kernel, self.stride, (1, 1))
        ph, pw = self.padding
        gpad = np.zeros((n, c, max(extent[0], h + ph), max(extent[1], w + pw)), g.dtype)
        share = g / _avg_divisor(self.input_shape, out, self.kernel, self.stride, self.padding,
                                 self.count_include_pad)
        gwin = np.broadcast_to(share[:, :, None, None], (n, c) + self.kernel + tuple(out))
        add_windows(gpad, gwin, self.stride, (1, 1))
        return (gpad[:, :, ph:ph + h, pw:pw + w],)


def adaptive_bounds(size, out):
    """Window [start, end) of each of `out` outputs over `size` inputs:
    start = floor(i * size / out), end = ceil((i + 1) * size / out)."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


class AdaptiveAvgPool2d(Function):
    """Setting: output_size (pair). Averages windows that tile the input as evenly
    as possible; overlapping by one where the sizes do not divide."""

    def forward(self, x):
        self.input_shape = x.shape
        rows = adaptive_bounds(x.shape[2], self.output_size[0])
        cols = adaptive_bounds(x.shape[3], self.output_size[1])
        out = xp_of(x).empty(x.shape[:2] + tuple(self.output_size), x.dtype)
        for i, (h0, h1) in enumerate(rows):
            for j, (w0, w1) in enumerate(cols):
                out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
        return out

    def backward(self, g):
        rows = adaptive_bounds(self.input_shape[2], self.output_size[0])
        cols = adaptive_bounds(self.input_shape[3], self.output_size[1])
        grad = xp_of(g).zeros(self.input_shape, g.dtype)
        for i, (h0, h1) in enumerate(rows):
            for j, (w0, w1) in enumerate(cols):
                grad[:, :, h0:h1, w0:w1] += (g[:, :, i, j] / ((h1 - h0) * (w1 - w0)))[:, :, None, None]
        return (grad,)
