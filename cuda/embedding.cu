// Embedding: the forward gathers rows, the backward zeroes the table gradient
// and scatters each dy row into its table row with atomicAdd. Both map one
// thread to one element of the (n, D) side, so a warp reads or writes 32
// consecutive floats of a row (coalesced) whatever the indices.
#include "embedding.cuh"

#include <algorithm>

namespace pydl::cuda {
namespace embedding_detail {

constexpr int kThreads = 256;

inline unsigned grid_for(index_t items) {
  return static_cast<unsigned>(
      std::min<index_t>(ceil_div(items, kThreads), index_t(multiprocessor_count()) * 8));
}

// out[i, d] = weight[indices[i], d], NaN for an index outside [0, V).
__global__ void __launch_bounds__(kThreads)
embedding_forward_kernel(float* __restrict__ out, const float* __restrict__ weight,
                         const std::int64_t* __restrict__ indices, index_t n, index_t V,
                         index_t D) {
  const index_t total = n * D, stride = index_t(gridDim.x) * blockDim.x;
  for (index_t e = index_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const index_t i = e / D, d = e - i * D;
    const std::int64_t row = __ldg(indices + i);
    out[e] = row >= 0 && row < V ? __ldg(weight + row * D + d) : NAN;
  }
}

__global__ void __launch_bounds__(kThreads)
fill_zero_kernel(float* __restrict__ out, index_t n) {
  const index_t stride = index_t(gridDim.x) * blockDim.x;
  for (index_t e = index_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) out[e] = 0.0f;
}

// dweight[indices[i], d] += dy[i, d], skipping padding_idx and bad indices.
__global__ void __launch_bounds__(kThreads)
embedding_scatter_add_kernel(float* __restrict__ dweight, const float* __restrict__ dy,
                             const std::int64_t* __restrict__ indices, index_t n, index_t V,
                             index_t D, index_t padding_idx) {
  const index_t total = n * D, stride = index_t(gridDim.x) * blockDim.x;
  for (index_t e = index_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const index_t i = e / D, d = e - i * D;
    const std::int64_t row = __ldg(indices + i);
    if (row >= 0 && row < V && row != padding_idx) atomicAdd(dweight + row * D + d, __ldg(dy + e));
  }
}

}  // namespace embedding_detail

using namespace embedding_detail;

void embedding_forward(float* out, const float* weight, const std::int64_t* indices, index_t n,
                       index_t V, index_t D, cudaStream_t stream) {
  if (n * D == 0) return;
  PYDL_LAUNCH(embedding_forward_kernel, dim3(grid_for(n * D)), dim3(kThreads), 0, stream)(
      out, weight, indices, n, V, D);
}

void embedding_backward(float* dweight, const float* dy, const std::int64_t* indices, index_t n,
                        index_t V, index_t D, index_t padding_idx, cudaStream_t stream) {
  if (V * D == 0) return;
  PYDL_LAUNCH(fill_zero_kernel, dim3(grid_for(V * D)), dim3(kThreads), 0, stream)(dweight, V * D);
  if (n == 0) return;
  PYDL_LAUNCH(embedding_scatter_add_kernel, dim3(grid_for(n * D)), dim3(kThreads), 0, stream)(
      dweight, dy, indices, n, V, D, padding_idx);
}

}  // namespace pydl::cuda
