"""The update formulas as array code, for parameters the compiled kernels do not
take (float64, on either device). Each function has the signature of the
compiled kernel of the same name in pydl._C (csrc/optim.h states the math) and
updates param and the state arrays in place, in the same order of operations.
`update_kernel(array, name)` picks the compiled kernel or this form.
"""
import math

import numpy as np

from pydl._device import kernels_for
from pydl.ops.common import xp_of


def _lerp_(start, end, weight):
    # start + w (end - start), or end - (end - start)(1 - w) for |w| >= 0.5.
    if abs(weight) < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)


def _decayed(param, grad, weight_decay, maximize):
    grad = -grad if maximize else grad
    return grad + weight_decay * param if weight_decay != 0 else grad


def sgd_step(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0,
             weight_decay=0.0, nesterov=False, maximize=False, first_step=False):
    g = _decayed(param, grad, weight_decay, maximize)
    if momentum != 0:
        if first_step:
            momentum_buffer[...] = g
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * g
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    param += -lr * g


def rmsprop_step(param, grad, square_avg, grad_avg=None, momentum_buffer=None, *, lr,
                 alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 maximize=False):
    xp = xp_of(param)
    g = _decayed(param, grad, weight_decay, maximize)
    square_avg *= alpha
    square_avg += (1 - alpha) * g * g
    if centered:
        _lerp_(grad_avg, g, 1 - alpha)
        avg = xp.sqrt(square_avg - grad_avg * grad_avg)
    else:
        avg = xp.sqrt(square_avg)
    avg += eps
    if momentum > 0:
        momentum_buffer *= momentum
        momentum_buffer += g / avg
        param += -lr * momentum_buffer
    else:
        param += -lr * g / avg


def adagrad_step(param, grad, state_sum, *, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 step, maximize=False):
    xp = xp_of(param)
    g = _decayed(param, grad, weight_decay, maximize)
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum += g * g
    param += -clr * g / (xp.sqrt(state_sum) + eps)


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, lr, beta1=0.9,
              beta2=0.999, eps=1e-8, weight_decay=0.0, step, amsgrad=False,
              decoupled_weight_decay=False, maximize=False):
    xp = xp_of(param)
    if decoupled_weight_decay:
        param *= 1 - lr * weight_decay
        g = -grad if maximize else grad
    else:
        g = _decayed(param, grad, weight_decay, maximize)
    _lerp_(exp_avg, g, 1 - beta1)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    second = exp_avg_sq
    if amsgrad:
        xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    step_size = lr / (1 - beta1 ** step)
    denom = xp.sqrt(second) / math.sqrt(1 - beta2 ** step) + eps
    param += -step_size * exp_avg / denom


_ARRAY_FORMS = {"sgd_step": sgd_step, "rmsprop_step": rmsprop_step,
                "adagrad_step": adagrad_step, "adam_step": adam_step}


def update_kernel(array, name):
    """The fused compiled kernel of the array's device for a float32 parameter, else the
    array form."""
    if array.dtype == np.float32:
        return getattr(kernels_for(array), name)
    return _ARRAY_FORMS[name]
