"""The affine map of a Linear layer: y = x W^T + b, with W (out, in).

Every product goes to the GEMM with transpose flags, so W is never copied
transposed:  y = x op(W) with op = transpose,  dx = dy W,  dW = dy^T x,
db = sum over rows of dy. Leading axes of x are folded into the rows. Under
pydl.autocast the three products take bfloat16 operands (see pydl.ops.gemm).
"""
from pydl import amp
from pydl.autograd import Function
from pydl.ops.gemm import matmul_arrays


def _rows(shape):
    """The leading axes' product (reshape(-1, 0) cannot infer it: in_features may be 0)."""
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return rows


class Linear(Function):
    def forward(self, x, weight, bias=None):
        x_rows = x.reshape(_rows(x.shape), x.shape[-1])
        self.bf16 = amp.bf16_for(x)
        y = matmul_arrays(x_rows, weight, trans_b=True, bf16=self.bf16)
        if bias is not None:
            y += bias
        self.save(x_rows, weight)
        self.x_shape = x.shape
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, g):
        x_rows, weight = self.saved
        g_rows = g.reshape(_rows(g.shape), g.shape[-1])
        need_x, need_w = self.needs_input_grad[:2]
        dx = matmul_arrays(g_rows, weight, bf16=self.bf16).reshape(self.x_shape) if need_x else None
        dw = matmul_arrays(g_rows, x_rows, trans_a=True, bf16=self.bf16) if need_w else None
        grads = (dx, dw)
        if len(self.needs_input_grad) == 3:
            grads += (g_rows.sum(axis=0) if self.needs_input_grad[2] else None,)
        return grads
