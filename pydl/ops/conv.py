"""2-D convolution (cross-correlation), NCHW. float32 runs the compiled kernels;
float64 runs the NumPy form below, which states the math:

    y[n, o, i, j] = b[o] + sum_{c, k, l} w[o, c, k, l] * xpad[n, g*Cg + c, i*sh + k*dh, j*sw + l*dw]

with g = o // (C_out / groups), Cg = C_in / groups and xpad the input zero-padded
by (ph, pw) on each side. Backward: dw = dy (x) windows, dx = the adjoint of the
window gather (col2im), db = dy summed over n, i, j.
"""
import numpy as np

from pydl._device import kernels_for
from pydl.autograd import Function
from pydl.ops.common import contiguous, require_host, xp_of


def windows(xpad, kernel, stride, dilation, out_hw):
    """A read-only view (N, C, KH, KW, H_out, W_out) of the windows of xpad."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    n, c = xpad.shape[:2]
    s = xpad.strides
    return np.lib.stride_tricks.as_strided(
        xpad, (n, c, kh, kw, ho, wo), (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw),
        writeable=False)


def add_windows(gpad, gwin, stride, dilation):
    """The adjoint of windows(): gpad[..., i*sh + k*dh, j*sw + l*dw] += gwin[:, :, k, l, i, j]."""
    kh, kw, ho, wo = gwin.shape[2:]
    (sh, sw), (dh, dw) = stride, dilation
    for k in range(kh):
        for l in range(kw):
            gpad[:, :, k * dh:k * dh + sh * (ho - 1) + 1:sh,
                 l * dw:l * dw + sw * (wo - 1) + 1:sw] += gwin[:, :, k, l]


def output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _reference_forward(x, w, b, stride, padding, dilation, groups):
    n, cin, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    ho = output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = output_size(wd, kw, stride[1], padding[1], dilation[1])
    xpad = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    cols = windows(xpad, (kh, kw), stride, dilation, (ho, wo))
    cols = cols.reshape(n, groups, cg, kh, kw, ho, wo)
    wg = w.reshape(groups, cout // groups, cg, kh, kw)
    y = np.einsum("ngcklij,gockl->ngoij", cols, wg, optimize=True).reshape(n, cout, ho, wo)
    return y if b is None else y + b[None, :, None, None]


def _reference_backward(g, x, w, stride, padding, dilation, groups):
    n, cin, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    ho, wo = g.shape[2:]
    xpad = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    cols = windows(xpad, (kh, kw), stride, dilation, (ho, wo)).reshape(
        n, groups, cg, kh, kw, ho, wo)
    gg = g.reshape(n, groups, cout // groups, ho, wo)
    wg = w.reshape(groups, cout // groups, cg, kh, kw)
    grad_w = np.einsum("ngoij,ngcklij->gockl", gg, cols, optimize=True).reshape(w.shape)
    gcols = np.einsum("ngoij,gockl->ngcklij", gg, wg, optimize=True).reshape(
        n, cin, kh, kw, ho, wo)
    gpad = np.zeros_like(xpad)
    add_windows(gpad, gcols, stride, dilation)
    grad_x = gpad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + wd]
    return grad_x, grad_w, g.sum(axis=(0, 2, 3))


class Conv2d(Function):
    """Inputs (x, weight) or (x, weight, bias). Settings: stride, padding,
    dilation (pairs of ints) and groups."""

    def _geometry(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def forward(self, x, w, b=None):
        self.has_bias = b is not None
        self.save(x, w)
        if x.dtype == np.float32:
            return kernels_for(x).conv2d_forward(
                contiguous(x), contiguous(w), None if b is None else contiguous(b),
                **self._geometry())
        require_host(x, "conv2d")
        return _reference_forward(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def backward(self, g):
        x, w = self.saved
        need = self.needs_input_grad + (False,)
        if x.dtype == np.float32:
            gx, gw, gb = kernels_for(x).conv2d_backward(
                contiguous(g), contiguous(x), contiguous(w), **self._geometry(),
                input_grad=need[0], weight_grad=need[1], bias_grad=self.has_bias and need[2])
        else:
            gx, gw, gb = _reference_backward(g, x, w, self.stride, self.padding, self.dilation,
                                             self.groups)
        grads = (gx if need[0] else None, gw if need[1] else None)
        return grads + ((gb if need[2] else None,) if self.has_bias else ())


def transpose_output_size(size, kernel, stride, padding, dilation, output_padding):
    """The output size of a transposed convolution: the input size of the convolution
    it is the adjoint of."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1 + output_padding


class ConvTranspose2d(Function):
    """The adjoint of Conv2d in its input (a fractionally strided convolution).
    Inputs (x, weight) or (x, weight, bias): x (N, C_in, H, W), weight (C_in,
    C_out/groups, KH, KW) as in PyTorch. Settings as Conv2d plus output_padding (a pair,
    each below its stride), which adds rows/columns at the bottom/right.

    It runs on the convolution kernels with the roles swapped: for the convolution y =
    conv(z, weight) from C_out to C_in channels, forward is its grad-input (dz for dy =
    x), the input gradient is conv(g, weight) and the weight gradient is the
    convolution's grad-weight for input g and output gradient x."""

    def _geometry(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def forward(self, x, w, b=None):
        self.has_bias = b is not None
        self.save(x, w)
        out_hw = [transpose_output_size(x.shape[2 + a], w.shape[2 + a], self.stride[a],
                                        self.padding[a], self.dilation[a],
                                        self.output_padding[a]) for a in range(2)]
        # Only its shape is read: the convolution's grad-input does not use its input.
        placeholder = xp_of(x).empty((x.shape[0], w.shape[1] * self.groups, *out_hw), x.dtype)
        if x.dtype == np.float32:
            out = kernels_for(x).conv2d_backward(
                contiguous(x), placeholder, contiguous(w), **self._geometry(),
                input_grad=True, weight_grad=False, bias_grad=False)[0]
        else:
            require_host(x, "conv_transpose2d")
            out = _reference_backward(x, np.zeros_like(placeholder), w, self.stride,
                                      self.padding, self.dilation, self.groups)[0]
        return out if b is None else out + b.reshape(1, -1, 1, 1)

    def backward(self, g):
        x, w = self.saved
        need = self.needs_input_grad + (False,)
        gx = gw = None
        if x.dtype == np.float32:
            kernels = kernels_for(x)
            if need[0]:
                gx = kernels.conv2d_forward(contiguous(g), contiguous(w), None,
                                            **self._geometry())
            if need[1]:
                gw = kernels.conv2d_backward(contiguous(x), contiguous(g), contiguous(w),
                                             **self._geometry(), input_grad=False,
                                             weight_grad=True, bias_grad=False)[1]
        else:
            gx = _reference_forward(g, w, None, self.stride, self.padding, self.dilation,
                                    self.groups)
            gw = _reference_backward(x, g, w, self.stride, self.padding, self.dilation,
                                     self.groups)[1]
        grads = (gx if need[0] else None, gw if need[1] else None)
        return grads + ((g.sum(axis=(0, 2, 3)) if need[2] else None,) if self.has_bias else ())
