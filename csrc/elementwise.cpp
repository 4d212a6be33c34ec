// PLACEHOLDER reference activations (replaced by the vectorized kernels).
#include "elementwise.h"

#include <cmath>

namespace pydl {

void relu_forward(float* y, const float* x, index_t n) { for (index_t i = 0; i < n; ++i) y[i] = x[i] > 0 ? x[i] : 0; }
void relu_backward(float* dx, const float* dy, const float* x, index_t n) { for (index_t i = 0; i < n; ++i) dx[i] = x[i] > 0 ? dy[i] : 0; }
void sigmoid_forward(float* y, const float* x, index_t n) { for (index_t i = 0; i < n; ++i) y[i] = 1 / (1 + std::exp(-x[i])); }
void sigmoid_backward(float* dx, const float* dy, const float* y, index_t n) { for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1 - y[i]); }
void tanh_forward(float* y, const float* x, index_t n) { for (index_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]); }
void tanh_backward(float* dx, const float* dy, const float* y, index_t n) { for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * (1 - y[i] * y[i]); }
void gelu_forward(float* y, const float* x, index_t n) { for (index_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1 + std::erf(x[i] * 0.70710678f)); }
void gelu_backward(float* dx, const float* dy, const float* x, index_t n) {
  for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * (0.5f * (1 + std::erf(x[i] * 0.70710678f)) + x[i] * 0.39894228f * std::exp(-0.5f * x[i] * x[i]));
}
void softmax_forward(float* y, const float* x, index_t rows, index_t cols) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols; float* yr = y + r * cols;
    float m = -INFINITY; for (index_t c = 0; c < cols; ++c) m = std::fmax(m, xr[c]);
    double s = 0; for (index_t c = 0; c < cols; ++c) s += (yr[c] = std::exp(xr[c] - m));
    for (index_t c = 0; c < cols; ++c) yr[c] = float(yr[c] / s);
  }
}
void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols) {
  for (index_t r = 0; r < rows; ++r) {
    double s = 0; for (index_t c = 0; c < cols; ++c) s += dy[r * cols + c] * y[r * cols + c];
    for (index_t c = 0; c < cols; ++c) dx[r * cols + c] = y[r * cols + c] * float(dy[r * cols + c] - s);
  }
}
void log_softmax_forward(float* y, const float* x, index_t rows, index_t cols) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols; float* yr = y + r * cols;
    float m = -INFINITY; for (index_t c = 0; c < cols; ++c) m = std::fmax(m, xr[c]);
    double s = 0; for (index_t c = 0; c < cols; ++c) s += std::exp(xr[c] - m);
    for (index_t c = 0; c < cols; ++c) yr[c] = xr[c] - m - float(std::log(s));
  }
}
void log_softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols) {
  for (index_t r = 0; r < rows; ++r) {
    double s = 0; for (index_t c = 0; c < cols; ++c) s += dy[r * cols + c];
    for (index_t c = 0; c < cols; ++c) dx[r * cols + c] = dy[r * cols + c] - std::exp(y[r * cols + c]) * float(s);
  }
}

}  // namespace pydl
