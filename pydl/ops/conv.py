"""2-D convolution (cross-correlation), NCHW. float32 runs the compiled kernels;
float64 runs the NumPy form below, which states the math:

    y[n, o, i, j] = b[o] + sum_{c, k, l} w[o, c, k, l] * xpad[n, g*Cg + c, i*sh + k*dh, j*sw + l*dw]

with g = o // (C_out / groups), Cg = C_in / groups and xpad the input zero-padded
by (ph, pw) on each side. Backward: dw = dy (x) windows, dx = the adjoint of the
window gather (col2im), db = dy summed over n, i, j. Under pydl.autocast the
float32 CPU kernels run their GEMMs with bfloat16 operands (bf16=True).
"""
import numpy as np

from pydl import amp
from pydl._C import conv_output_size as output_size
from pydl._C import conv_transpose_output_size as transposed_output_size
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
    dilation (pairs of ints) and groups. Backward gets the arrays forward handed the
    kernels (made contiguous once), and the weight's Winograd transform when forward
    computed one and the input needs a gradient, so a step transforms the weight once."""

    def _geometry(self):
        geometry = dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                        groups=self.groups)
        return dict(geometry, bf16=True) if self.bf16 else geometry

    def forward(self, x, w, b=None):
        self.has_bias = b is not None
        self.bf16 = amp.bf16_for(x)
        if x.dtype != np.float32:
            require_host(x, "conv2d")
            self.save(x, w, None)
            return _reference_forward(x, w, b, self.stride, self.padding, self.dilation,
                                      self.groups)
        x, w = contiguous(x), contiguous(w)
        y, transform = kernels_for(x).conv2d_forward(
            x, w, None if b is None else contiguous(b), **self._geometry(),
            keep_weight_transform=True)
        self.save(x, w, transform if self.needs_input_grad[0] else None)
        return y

    def backward(self, g):
        x, w, transform = self.saved
        need = self.needs_input_grad + (False,)
        if x.dtype == np.float32:
            gx, gw, gb = kernels_for(x).conv2d_backward(
                contiguous(g), x, w, **self._geometry(), input_grad=need[0],
                weight_grad=need[1], bias_grad=self.has_bias and need[2],
                weight_transform=transform)
        else:
            gx, gw, gb = _reference_backward(g, x, w, self.stride, self.padding, self.dilation,
                                             self.groups)
        grads = (gx if need[0] else None, gw if need[1] else None)
        return grads + ((gb if need[2] else None,) if self.has_bias else ())


class ConvTranspose2d(Function):
    """The adjoint of Conv2d with the same settings (stride, padding, dilation, groups;
    plus output_padding, which picks the output size among those that conv2d maps back
    to the input's): y = conv2d's input gradient for output gradient x. So forward is the
    conv grad-input kernel, and backward uses conv2d forward (dx = conv2d(dy, w)) and the
    grad-weight kernel (dw with x in the role of the conv output gradient). The weight is
    (C_in, C_out / groups, KH, KW), conv2d's layout read the other way round. Backward
    gets the arrays forward handed the kernels."""

    def _geometry(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def _output_shape(self, x, w):
        n, _, h, wd = x.shape
        size = [transposed_output_size(s, w.shape[2 + a], self.stride[a], self.padding[a],
                                       self.dilation[a], self.output_padding[a])
                for a, s in enumerate((h, wd))]
        return (n, w.shape[1] * self.groups, size[0], size[1])

    def forward(self, x, w, b=None):
        self.has_bias = b is not None
        shape = self._output_shape(x, w)
        if x.dtype == np.float32:
            x, w = contiguous(x), contiguous(w)
            # conv2d's input, of which the kernel reads only the shape (no weight gradient).
            shape_only = xp_of(x).empty(shape, x.dtype)
            y, _, _ = kernels_for(x).conv2d_backward(
                x, shape_only, w, **self._geometry(), input_grad=True, weight_grad=False,
                bias_grad=False)
        else:
            require_host(x, "conv_transpose2d")
            y = _reference_backward(x, np.zeros(shape, x.dtype), w, self.stride, self.padding,
                                    self.dilation, self.groups)[0]
        self.save(x, w)
        return y if b is None else y + b.reshape(1, -1, 1, 1)

    def backward(self, g):
        x, w = self.saved
        need_x, need_w = self.needs_input_grad[:2]
        gx = gw = None
        if x.dtype == np.float32:
            kernels = kernels_for(g)
            g = contiguous(g)
            if need_x:
                gx = kernels.conv2d_forward(g, w, None, **self._geometry())
            if need_w:
                gw = kernels.conv2d_backward(x, g, w, **self._geometry(), input_grad=False,
                                             weight_grad=True, bias_grad=False)[1]
        else:
            if need_x:
                gx = _reference_forward(g, w, None, self.stride, self.padding, self.dilation,
                                        self.groups)
            if need_w:
                gw = _reference_backward(x, g, w, self.stride, self.padding, self.dilation,
                                         self.groups)[1]
        grads = (gx, gw)
        if self.has_bias:
            grads += (g.sum(axis=(0, 2, 3)) if self.needs_input_grad[2] else None,)
        return grads
