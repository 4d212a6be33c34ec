// Elementwise activations (a grid-stride map, float4 when aligned) and
// row-wise softmax / log_softmax (warp- or block-per-row shuffle reductions).
#include "elementwise.cuh"

#include <algorithm>

namespace pydl::cuda {
namespace elementwise_detail {

constexpr float kSqrtHalf = 0.70710678118654752f;     // 1/sqrt(2)
constexpr float kInvSqrtTwoPi = 0.39894228040143268f;  // 1/sqrt(2 pi)

// Forward ops take x; gradient ops take (dy, saved).
struct Relu {
  __device__ float operator()(float x) const { return x > 0.0f ? x : 0.0f; }
};
struct ReluGrad {
  __device__ float operator()(float dy, float x) const { return x > 0.0f ? dy : 0.0f; }
};
struct Sigmoid {
  __device__ float operator()(float x) const { return 1.0f / (1.0f + expf(-x)); }
};
struct SigmoidGrad {  // sigma' = y (1 - y)
  __device__ float operator()(float dy, float y) const { return dy * y * (1.0f - y); }
};
struct Tanh {
  __device__ float operator()(float x) const { return tanhf(x); }
};
struct TanhGrad {  // tanh' = 1 - y^2
  __device__ float operator()(float dy, float y) const { return dy * (1.0f - y * y); }
};
struct Gelu {  // x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2
  __device__ float operator()(float x) const { return 0.5f * x * (1.0f + erff(x * kSqrtHalf)); }
};
struct GeluGrad {  // gelu' = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi)
  __device__ float operator()(float dy, float x) const {
    return dy * (0.5f * (1.0f + erff(x * kSqrtHalf)) + x * kInvSqrtTwoPi * expf(-0.5f * x * x));
  }
};

template <class Op, bool kBinary>
__device__ __forceinline__ float apply(Op op, float a, float b) {
  if constexpr (kBinary) return op(a, b);
  else return op(a);
}

// out[i] = op(in0[i]) or op(in0[i], in1[i]). With `vec` (every pointer 16-byte
// aligned) threads take float4 runs and the n % 4 tail element by element.
template <class Op, bool kBinary>
__global__ void map_kernel(float* __restrict__ out, const float* __restrict__ in0,
                           const float* __restrict__ in1, index_t n, bool vec) {
  const Op op;
  const index_t stride = index_t(gridDim.x) * blockDim.x;
  const index_t first = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  index_t scalar_from = 0;
  if (vec) {
    const index_t runs = n / 4;
    for (index_t r = first; r < runs; r += stride) {
      const float4 a = __ldg(reinterpret_cast<const float4*>(in0) + r);
      const float4 b = kBinary ? __ldg(reinterpret_cast<const float4*>(in1) + r) : a;
      reinterpret_cast<float4*>(out)[r] =
          make_float4(apply<Op, kBinary>(op, a.x, b.x), apply<Op, kBinary>(op, a.y, b.y),
                      apply<Op, kBinary>(op, a.z, b.z), apply<Op, kBinary>(op, a.w, b.w));
    }
    scalar_from = runs * 4;
  }
  for (index_t i = scalar_from + first; i < n; i += stride)
    out[i] = apply<Op, kBinary>(op, __ldg(in0 + i), kBinary ? __ldg(in1 + i) : 0.0f);
}

// Enough 256-thread blocks for the work, at most 8 per multiprocessor (the
// grid-stride loop covers the rest).
template <class Op, bool kBinary>
void launch_map(float* out, const float* in0, const float* in1, index_t n, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  const bool vec = aligned16(out) && aligned16(in0) && (!kBinary || aligned16(in1));
  const index_t items = vec ? std::max<index_t>(n / 4, 1) : n;
  const unsigned blocks = static_cast<unsigned>(
      std::min<index_t>(ceil_div(items, kThreads), index_t(multiprocessor_count()) * 8));
  PYDL_LAUNCH((map_kernel<Op, kBinary>), dim3(blocks), dim3(kThreads), 0, stream)(out, in0, in1, n, vec);
}

// softmax: y = exp(x - lse); log_softmax: y = x - lse.
template <bool kBlockPerRow, bool kLog>
__global__ void softmax_forward_kernel(float* __restrict__ y, const float* __restrict__ x,
                                       index_t rows, index_t cols) {
  const RowGroup<kBlockPerRow> g;
  if (g.row >= rows) return;  // a whole warp (never part of one) past the last row
  const float* xr = x + g.row * cols;
  float* yr = y + g.row * cols;
  const float lse = row_logsumexp(g, xr, cols);
  for (index_t c = g.rank; c < cols; c += g.size) yr[c] = kLog ? xr[c] - lse : expf(xr[c] - lse);
}

// softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy).
template <bool kBlockPerRow, bool kLog>
__global__ void softmax_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                        const float* __restrict__ y, index_t rows, index_t cols) {
  const RowGroup<kBlockPerRow> g;
  if (g.row >= rows) return;
  const index_t offset = g.row * cols;
  float s = 0.0f;
  for (index_t c = g.rank; c < cols; c += g.size) s += kLog ? dy[offset + c] : dy[offset + c] * y[offset + c];
  s = g.reduce(s, SumOp{}, 0.0f);
  for (index_t c = g.rank; c < cols; c += g.size) {
    const index_t i = offset + c;
    dx[i] = kLog ? dy[i] - expf(y[i]) * s : y[i] * (dy[i] - s);
  }
}

template <bool kLog>
void launch_softmax_forward(float* y, const float* x, index_t rows, index_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const dim3 grid = row_grid(rows, cols), block(kRowBlockThreads);
  if (block_per_row(cols))
    PYDL_LAUNCH((softmax_forward_kernel<true, kLog>), grid, block, 0, stream)(y, x, rows, cols);
  else
    PYDL_LAUNCH((softmax_forward_kernel<false, kLog>), grid, block, 0, stream)(y, x, rows, cols);
}

template <bool kLog>
void launch_softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols,
                             cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const dim3 grid = row_grid(rows, cols), block(kRowBlockThreads);
  if (block_per_row(cols))
    PYDL_LAUNCH((softmax_backward_kernel<true, kLog>), grid, block, 0, stream)(dx, dy, y, rows, cols);
  else
    PYDL_LAUNCH((softmax_backward_kernel<false, kLog>), grid, block, 0, stream)(dx, dy, y, rows, cols);
}

}  // namespace elementwise_detail

using namespace elementwise_detail;

void relu_forward(float* y, const float* x, index_t n, cudaStream_t s) { launch_map<Relu, false>(y, x, nullptr, n, s); }
void relu_backward(float* dx, const float* dy, const float* x, index_t n, cudaStream_t s) { launch_map<ReluGrad, true>(dx, dy, x, n, s); }
void sigmoid_forward(float* y, const float* x, index_t n, cudaStream_t s) { launch_map<Sigmoid, false>(y, x, nullptr, n, s); }
void sigmoid_backward(float* dx, const float* dy, const float* y, index_t n, cudaStream_t s) { launch_map<SigmoidGrad, true>(dx, dy, y, n, s); }
void tanh_forward(float* y, const float* x, index_t n, cudaStream_t s) { launch_map<Tanh, false>(y, x, nullptr, n, s); }
void tanh_backward(float* dx, const float* dy, const float* y, index_t n, cudaStream_t s) { launch_map<TanhGrad, true>(dx, dy, y, n, s); }
void gelu_forward(float* y, const float* x, index_t n, cudaStream_t s) { launch_map<Gelu, false>(y, x, nullptr, n, s); }
void gelu_backward(float* dx, const float* dy, const float* x, index_t n, cudaStream_t s) { launch_map<GeluGrad, true>(dx, dy, x, n, s); }

void softmax_forward(float* y, const float* x, index_t rows, index_t cols, cudaStream_t s) {
  launch_softmax_forward<false>(y, x, rows, cols, s);
}
void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols, cudaStream_t s) {
  launch_softmax_backward<false>(dx, dy, y, rows, cols, s);
}
void log_softmax_forward(float* y, const float* x, index_t rows, index_t cols, cudaStream_t s) {
  launch_softmax_forward<true>(y, x, rows, cols, s);
}
void log_softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols, cudaStream_t s) {
  launch_softmax_backward<true>(dx, dy, y, rows, cols, s);
}

}  // namespace pydl::cuda
