// Activations and their gradients, and row-wise softmax, on the GPU, with the
// semantics of csrc/elementwise.h. Pointers are device pointers; each call
// only enqueues work on `stream`.
#pragma once
#include "common.cuh"

namespace pydl::cuda {

// y = f(x) over n elements. Backward: dx = dy * f'(.), where the saved tensor
// is x for relu/gelu and the output y for sigmoid/tanh.
void relu_forward(float* y, const float* x, index_t n, cudaStream_t stream);
void relu_backward(float* dx, const float* dy, const float* x, index_t n, cudaStream_t stream);
void sigmoid_forward(float* y, const float* x, index_t n, cudaStream_t stream);
void sigmoid_backward(float* dx, const float* dy, const float* y, index_t n, cudaStream_t stream);
void tanh_forward(float* y, const float* x, index_t n, cudaStream_t stream);
void tanh_backward(float* dx, const float* dy, const float* y, index_t n, cudaStream_t stream);
// gelu(x) = x * Phi(x), the exact (erf) form.
void gelu_forward(float* y, const float* x, index_t n, cudaStream_t stream);
void gelu_backward(float* dx, const float* dy, const float* x, index_t n, cudaStream_t stream);

// Over the last axis of a (rows, cols) array:
// softmax: y = exp(x - lse(x));  dx = y * (dy - sum(dy * y))
// log_softmax: y = x - lse(x);   dx = dy - exp(y) * sum(dy)
void softmax_forward(float* y, const float* x, index_t rows, index_t cols, cudaStream_t stream);
void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols,
                      cudaStream_t stream);
void log_softmax_forward(float* y, const float* x, index_t rows, index_t cols, cudaStream_t stream);
void log_softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols,
                          cudaStream_t stream);

}  // namespace pydl::cuda
