// Elementwise activations and their gradients, and row-wise softmax.
#pragma once
#include "common.h"

namespace pydl {

// y = f(x) over n elements.  Backward: dx = dy * f'(.), where the saved tensor
// is x for relu/gelu and the output y for sigmoid/tanh (f' is cheaper from y).
void relu_forward(float* y, const float* x, index_t n);
void relu_backward(float* dx, const float* dy, const float* x, index_t n);
void sigmoid_forward(float* y, const float* x, index_t n);
void sigmoid_backward(float* dx, const float* dy, const float* y, index_t n);
void tanh_forward(float* y, const float* x, index_t n);
void tanh_backward(float* dx, const float* dy, const float* y, index_t n);
// gelu(x) = x * Phi(x), the exact (erf) form PyTorch uses by default.
void gelu_forward(float* y, const float* x, index_t n);
void gelu_backward(float* dx, const float* dy, const float* x, index_t n);

// Over the last axis of a (rows, cols) array:
// softmax: y = exp(x - max) / sum exp(x - max);  dx = y * (dy - sum(dy * y))
// log_softmax: y = x - max - log sum exp(x - max); dx = dy - exp(y) * sum(dy)
void softmax_forward(float* y, const float* x, index_t rows, index_t cols);
void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols);
void log_softmax_forward(float* y, const float* x, index_t rows, index_t cols);
void log_softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols);

}  // namespace pydl
