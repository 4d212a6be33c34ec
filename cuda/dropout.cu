// Dropout: a thread per Philox block draws 4 uniforms at once (one 10-round
// Philox4x32 evaluation) and handles elements 4b .. 4b+3, so every element
// gets the same random word as on the CPU, however the grid is shaped.
#include "dropout.cuh"

#include <algorithm>

#include "../csrc/philox.h"

namespace pydl::cuda {
namespace dropout_detail {

constexpr int kThreads = 256;

// The scale kept elements get: 1/(1-p), or 0 when everything is dropped.
inline float keep_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

// Enough blocks for `items` (one per thread), at most 8 per multiprocessor;
// the kernels' grid-stride loops take the rest.
inline unsigned grid_for(index_t items) {
  return static_cast<unsigned>(
      std::min<index_t>(ceil_div(items, kThreads), index_t(multiprocessor_count()) * 8));
}

// Keep decisions of block b: element 4b + lane is kept when its uniform >= p.
// y (and x) are null when only the mask is asked for.
__global__ void __launch_bounds__(kThreads)
dropout_forward_kernel(float* __restrict__ y, std::uint8_t* __restrict__ mask,
                       const float* __restrict__ x, index_t n, float p, float scale,
                       std::uint64_t seed, std::uint64_t offset) {
  const index_t blocks = (n + 3) / 4;
  const index_t stride = index_t(gridDim.x) * blockDim.x;
  for (index_t b = index_t(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks; b += stride) {
    const Philox4x32 bits = philox_block(seed, offset, static_cast<std::uint64_t>(b));
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const index_t i = 4 * b + lane;
      if (i >= n) break;
      const bool keep = uniform_from_bits(bits.v[lane]) >= p;
      mask[i] = keep;
      if (y) y[i] = keep ? x[i] * scale : 0.0f;
    }
  }
}

__global__ void __launch_bounds__(kThreads)
dropout_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                        const std::uint8_t* __restrict__ mask, index_t n, float scale) {
  const index_t stride = index_t(gridDim.x) * blockDim.x;
  for (index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = mask[i] ? dy[i] * scale : 0.0f;
}

}  // namespace dropout_detail

using namespace dropout_detail;

void dropout_mask(std::uint8_t* mask, index_t n, float p, std::uint64_t seed,
                  std::uint64_t offset, cudaStream_t stream) {
  dropout_forward(nullptr, mask, nullptr, n, p, seed, offset, stream);
}

void dropout_forward(float* y, std::uint8_t* mask, const float* x, index_t n, float p,
                     std::uint64_t seed, std::uint64_t offset, cudaStream_t stream) {
  if (n == 0) return;
  PYDL_LAUNCH(dropout_forward_kernel, dim3(grid_for((n + 3) / 4)), dim3(kThreads), 0, stream)(
      y, mask, x, n, p, keep_scale(p), seed, offset);
}

void dropout_backward(float* dx, const float* dy, const std::uint8_t* mask, index_t n, float p,
                      cudaStream_t stream) {
  if (n == 0) return;
  PYDL_LAUNCH(dropout_backward_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream)(
      dx, dy, mask, n, keep_scale(p));
}

}  // namespace pydl::cuda
