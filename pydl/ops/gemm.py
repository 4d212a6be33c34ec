"""Matrix products. float32 runs the compiled gemm, with transposes passed as
trans flags (never copied); other dtypes use numpy.matmul. Under
pydl.autocast (pydl.amp) float32 CPU products take bfloat16 operands
(gemm_bf16), in the forward and in the backward of products recorded there.

Shapes follow numpy.matmul for operands of 2 or more dimensions (pydl.tensor
turns 1-D operands into matrices): (..., M, K) @ (..., K, N) -> (..., M, N)
with the leading batch axes broadcast.
"""
import numpy as np

from pydl import amp
from pydl._device import kernels_for
from pydl.autograd import Function
from pydl.ops.common import unbroadcast, xp_of


def matmul_arrays(a, b, trans_a=False, trans_b=False, bf16=False):
    """op(a) @ op(b), where op transposes the last two axes when its flag is set;
    bf16: with bfloat16-rounded float32 operands (autocast)."""
    if a.dtype != np.float32 or b.dtype != np.float32:
        return xp_of(a).matmul(a.swapaxes(-1, -2) if trans_a else a,
                               b.swapaxes(-1, -2) if trans_b else b)
    kernels = kernels_for(a)
    gemm = kernels.gemm_bf16 if bf16 else kernels.gemm
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if not batch:
        return gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    if b.ndim == 2 and not trans_a:
        # One matrix for the whole batch: fold the batch into the rows of a,
        # (B*M, K) @ op(b), one large gemm instead of B small ones.
        out = gemm(a.reshape(-1, a.shape[-1]), b, trans_a=False, trans_b=trans_b)
        return out.reshape(batch + (a.shape[-2], out.shape[-1]))
    xp = xp_of(a)
    a3 = xp.broadcast_to(a, batch + a.shape[-2:]).reshape((-1,) + a.shape[-2:])
    b3 = xp.broadcast_to(b, batch + b.shape[-2:]).reshape((-1,) + b.shape[-2:])
    out = gemm(a3, b3, trans_a=trans_a, trans_b=trans_b)
    return out.reshape(batch + out.shape[-2:])


class MatMul(Function):
    # C = A B:  dA = dC B^T,  dB = A^T dC  (each summed over broadcast batch axes)
    def forward(self, a, b):
        self.save(a, b)
        self.bf16 = amp.bf16_for(a)
        return matmul_arrays(a, b, bf16=self.bf16)

    def backward(self, g):
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        ga = gb = None
        if need_a:
            ga = unbroadcast(matmul_arrays(g, b, trans_b=True, bf16=self.bf16), a.shape)
        if need_b:
            if b.ndim == 2 and a.ndim > 2:
                # Sum over the batch inside one gemm: (B*M, K)^T @ (B*M, N).
                a_rows = a.reshape(-1, a.shape[-1])
                gb = matmul_arrays(a_rows, g.reshape(-1, g.shape[-1]), trans_a=True,
                                   bf16=self.bf16)
            else:
                gb = unbroadcast(matmul_arrays(a, g, trans_a=True, bf16=self.bf16), b.shape)
        return ga, gb
