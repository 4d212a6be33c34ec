"""The CUDA kernels behind the CPU kernels' signatures.

The ops call every kernel the way pydl._C takes it: inputs in, new outputs
returned. The CUDA bindings (cuda/bindings.cpp) instead write into outputs the
caller passes and enqueue on a stream. `cuda_kernels(module, xp)` gives, per
kernel name, a function that allocates the outputs with the array module `xp`
(CuPy; uninitialized, since every kernel writes all of its outputs), calls
`module` with CuPy's current stream, and returns what pydl._C returns.
"""
import functools

import numpy as np

from pydl import backends
from pydl._C import conv_output_size as output_size
from pydl._C import pool2d_output_hw as pooled_size_pair
from pydl._runtime import alert_not_deterministic


def _adopt_outputs(xp, kernel, *args, **options):
    return tuple(None if a is None else xp.asarray(a) for a in kernel(*args, **options))


def cuda_kernels(module, xp):
    """{kernel name: function with pydl._C's signature} for the kernels `module` has."""

    def stream():
        return xp.cuda.get_current_stream().ptr

    def empty(shape, dtype=np.float32):
        return xp.empty(tuple(shape), dtype=dtype)

    def empty_if(wanted, shape):
        return empty(shape) if wanted else None

    def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
        if out is None:
            rows = a.shape[-1] if trans_a else a.shape[-2]
            cols = b.shape[-2] if trans_b else b.shape[-1]
            out = (xp.zeros if beta != 0 else xp.empty)(a.shape[:-2] + (rows, cols), np.float32)
        # TF32 tensor cores only when the user allows them, as in PyTorch.
        module.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=out,
                    tf32=backends.cuda.matmul.allow_tf32, stream=stream())
        return out

    def elementwise(name):
        forward, backward = getattr(module, name + "_forward"), getattr(module, name + "_backward")

        def run_forward(x):
            out = empty(x.shape)
            forward(x, out=out, stream=stream())
            return out

        def run_backward(dy, saved):
            out = empty(dy.shape)
            backward(dy, saved, out=out, stream=stream())
            return out
        return {name + "_forward": run_forward, name + "_backward": run_backward}

    def softmax_cross_entropy(logits, target, *, reduction="mean", ignore_index=-100,
                              compute_grad=True):
        # The reduced loss stays on the device as a 0-d array (no sync).
        loss, losses = empty((1,)), empty(logits.shape[:1])
        grad = empty_if(compute_grad, logits.shape)
        module.softmax_cross_entropy(logits, target, reduction=reduction,
                                     ignore_index=ignore_index, loss=loss, losses=losses,
                                     grad=grad, stream=stream())
        return loss.reshape(()), losses, grad

    def conv2d_forward(x, weight, bias=None, *, stride, padding, dilation, groups,
                       keep_weight_transform=False):
        out_hw = [output_size(x.shape[2 + a], weight.shape[2 + a], stride[a], padding[a],
                              dilation[a]) for a in range(2)]
        out = empty((x.shape[0], weight.shape[0], *out_hw))
        transform = module.conv2d_forward(
            x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
            keep_weight_transform=keep_weight_transform, out=out, stream=stream())
        return (out, transform) if keep_weight_transform else out

    def conv2d_backward(grad, x, weight, *, stride, padding, dilation, groups, input_grad=True,
                        weight_grad=True, bias_grad=True, weight_transform=None):
        if weight_grad:  # its blocks may sum into grad_weight with atomics
            alert_not_deterministic("conv2d_backward (grad_weight) on cuda")
        gx, gw = empty_if(input_grad, x.shape), empty_if(weight_grad, weight.shape)
        gb = empty_if(bias_grad, weight.shape[:1])
        module.conv2d_backward(grad, x, weight, stride=stride, padding=padding,
                               dilation=dilation, groups=groups,
                               weight_transform=weight_transform, grad_input=gx, grad_weight=gw,
                               grad_bias=gb, stream=stream())
        return gx, gw, gb

    def pooled_shape(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
        return tuple(x_shape[:2]) + pooled_size_pair(x_shape, kernel_size, stride, padding,
                                                     dilation, ceil_mode)

    def max_pool2d_forward(x, *, kernel_size, stride, padding=(0, 0), dilation=(1, 1),
                           ceil_mode=False):
        shape = pooled_shape(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        out, indices = empty(shape), empty(shape, np.int64)
        module.max_pool2d_forward(x, kernel_size=kernel_size, stride=stride, padding=padding,
                                  dilation=dilation, ceil_mode=ceil_mode, out=out,
                                  indices=indices, stream=stream())
        return out, indices

    def max_pool2d_backward(grad, indices, input_shape, **geometry):
        alert_not_deterministic("max_pool2d_backward on cuda (atomicAdd)")
        grad_input = empty(input_shape)
        module.max_pool2d_backward(grad, indices, **geometry, grad_input=grad_input,
                                   stream=stream())
        return grad_input

    def avg_pool2d_forward(x, *, kernel_size, stride, padding=(0, 0), ceil_mode=False,
                           count_include_pad=True):
        out = empty(pooled_shape(x.shape, kernel_size, stride, padding, (1, 1), ceil_mode))
        module.avg_pool2d_forward(x, kernel_size=kernel_size, stride=stride, padding=padding,
                                  ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                                  out=out, stream=stream())
        return out

    def avg_pool2d_backward(grad, input_shape, **geometry):
        grad_input = empty(input_shape)
        module.avg_pool2d_backward(grad, **geometry, grad_input=grad_input, stream=stream())
        return grad_input

    def with_stream(name):
        """A kernel called with pydl._C's arguments as they are, plus the stream."""
        kernel = getattr(module, name)
        return {name: lambda *args, **options: kernel(*args, **options, stream=stream())}

    def dropout_mask(shape, p, seed, offset):
        mask = empty(shape, np.uint8)
        module.dropout_mask(p, seed, offset, mask=mask, stream=stream())
        return mask

    def dropout_forward(x, p, seed, offset):
        y, mask = empty(x.shape), empty(x.shape, np.uint8)
        module.dropout_forward(x, p, seed, offset, y=y, mask=mask, stream=stream())
        return y, mask

    def dropout_backward(dy, mask, p):
        out = empty(dy.shape)
        module.dropout_backward(dy, mask, p, out=out, stream=stream())
        return out

    def embedding_forward(weight, indices):
        out = empty(indices.shape + weight.shape[1:])
        module.embedding_forward(weight, indices, out=out, stream=stream())
        return out

    def embedding_backward(dy, indices, num_embeddings, padding_idx=-1):
        alert_not_deterministic("embedding_backward on cuda (atomicAdd)")
        out = empty((num_embeddings, dy.shape[-1]))
        module.embedding_backward(dy, indices, num_embeddings, padding_idx, out=out,
                                  stream=stream())
        return out

    def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
        y, mean, invstd = empty(x.shape), empty(x.shape[1:2]), empty(x.shape[1:2])
        module.batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum,
                                  eps, y=y, mean=mean, invstd=invstd, stream=stream())
        return y, mean, invstd

    def batch_norm_backward(dy, x, mean, invstd, weight, training, input_grad=True,
                            affine_grad=True):
        dx = empty_if(input_grad, x.shape)
        dw, db = empty_if(affine_grad, x.shape[1:2]), empty_if(affine_grad, x.shape[1:2])
        module.batch_norm_backward(dy, x, mean, invstd, weight, training, dx=dx, dweight=dw,
                                   dbias=db, stream=stream())
        return dx, dw, db

    def layer_norm_forward(x, weight, bias, eps):
        y, mean, rstd = empty(x.shape), empty(x.shape[:1]), empty(x.shape[:1])
        module.layer_norm_forward(x, weight, bias, eps, y=y, mean=mean, rstd=rstd,
                                  stream=stream())
        return y, mean, rstd

    def layer_norm_backward(dy, x, mean, rstd, weight, input_grad=True, affine_grad=True):
        dx = empty_if(input_grad, x.shape)
        dw, db = empty_if(affine_grad, x.shape[1:]), empty_if(affine_grad, x.shape[1:])
        module.layer_norm_backward(dy, x, mean, rstd, weight, dx=dx, dweight=dw, dbias=db,
                                   stream=stream())
        return dx, dw, db

    kernels = dict(
        gemm=gemm, softmax_cross_entropy=softmax_cross_entropy, conv2d_forward=conv2d_forward,
        conv2d_backward=conv2d_backward, max_pool2d_forward=max_pool2d_forward,
        max_pool2d_backward=max_pool2d_backward, avg_pool2d_forward=avg_pool2d_forward,
        avg_pool2d_backward=avg_pool2d_backward, dropout_mask=dropout_mask,
        dropout_forward=dropout_forward, dropout_backward=dropout_backward,
        embedding_forward=embedding_forward, embedding_backward=embedding_backward,
        batch_norm_forward=batch_norm_forward, batch_norm_backward=batch_norm_backward,
        layer_norm_forward=layer_norm_forward, layer_norm_backward=layer_norm_backward)
    for name in ("relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax"):
        if hasattr(module, name + "_forward"):
            kernels.update(elementwise(name))
    # Optimizer steps update their arrays in place.
    for name in ("sgd_step", "rmsprop_step", "adagrad_step", "adam_step"):
        if hasattr(module, name):
            kernels.update(with_stream(name))
    # The recurrent kernels allocate and return their outputs as pydl._C's do (CuPy
    # arrays from pydl._cuda; NumPy ones from the emulation, which xp adopts).
    for name in ("rnn_forward", "rnn_backward"):
        if hasattr(module, name):
            kernel = with_stream(name)[name]
            kernels[name] = functools.partial(_adopt_outputs, xp, kernel)
    return {name: fn for name, fn in kernels.items() if hasattr(module, name)}
