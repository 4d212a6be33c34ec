// Fused softmax cross-entropy: one pass per row (warp- or block-per-row, as
// row-wise softmax) computes lse = logsumexp(z), loss = lse - t.z and
// grad = scale * (exp(z - lse) - t); one single-block kernel then reduces the
// per-row losses in double, in a fixed order, so the loss is deterministic.
// For mean over class indices the gradient scale needs the count of
// non-ignored rows before the row pass: a first single-block kernel counts
// them into the `loss` slot (as int bits), which the last kernel overwrites.
#include "loss.cuh"

namespace pydl::cuda {
namespace loss_detail {

constexpr int kReduceThreads = 256;

// How the row kernels scale the gradient and the last kernel divides the sum:
// by a host-known count, or by the count stored in loss[0] on the device.
struct Scaling {
  bool mean;
  bool count_on_device;
  float host_count;
  __device__ float count(const float* loss) const {
    return count_on_device ? static_cast<float>(__float_as_int(*loss)) : host_count;
  }
};

// loss[0] = number of i with target[i] != ignore_index (as int bits).
__global__ void __launch_bounds__(kReduceThreads)
count_targets_kernel(float* loss, const std::int64_t* __restrict__ target, index_t N,
                     std::int64_t ignore_index) {
  int count = 0;
  for (index_t i = threadIdx.x; i < N; i += blockDim.x) count += target[i] != ignore_index;
  count = block_reduce(count, SumOp{}, 0);
  if (threadIdx.x == 0) *loss = __int_as_float(count);
}

// One row of cross-entropy. Targets: `index_target` (class indices) or
// `prob_target` (probabilities); the other is null.
template <bool kBlockPerRow>
__global__ void cross_entropy_rows_kernel(float* __restrict__ losses, float* __restrict__ grad,
                                          const float* loss, const float* __restrict__ logits,
                                          const std::int64_t* __restrict__ index_target,
                                          const float* __restrict__ prob_target, index_t N,
                                          index_t C, std::int64_t ignore_index, Scaling scaling) {
  const RowGroup<kBlockPerRow> g;
  if (g.row >= N) return;  // a whole warp past the last row
  const float* z = logits + g.row * C;
  float* gr = grad ? grad + g.row * C : nullptr;
  std::int64_t label = 0;
  if (index_target) {
    label = index_target[g.row];
    if (label == ignore_index) {
      if (g.rank == 0) losses[g.row] = 0.0f;
      if (gr)
        for (index_t c = g.rank; c < C; c += g.size) gr[c] = 0.0f;
      return;  // the whole group: the label is the same for all its threads
    }
    if (label < 0 || label >= C) {
      if (g.rank == 0) losses[g.row] = NAN;
      if (gr)
        for (index_t c = g.rank; c < C; c += g.size) gr[c] = NAN;
      return;
    }
  }
  const float lse = row_logsumexp(g, z, C);
  float dot;  // t . z
  if (index_target) {
    dot = z[label];
  } else {
    const float* t = prob_target + g.row * C;
    float s = 0.0f;
    for (index_t c = g.rank; c < C; c += g.size) s += t[c] * z[c];
    dot = g.reduce(s, SumOp{}, 0.0f);
  }
  if (g.rank == 0) losses[g.row] = lse - dot;
  if (!gr) return;
  const float count = scaling.count(loss);
  const float scale = scaling.mean ? (count > 0.0f ? 1.0f / count : 0.0f) : 1.0f;
  for (index_t c = g.rank; c < C; c += g.size) {
    const float t = index_target ? (c == label ? 1.0f : 0.0f) : prob_target[g.row * C + c];
    gr[c] = scale * (expf(z[c] - lse) - t);
  }
}

// loss[0] = sum_i losses[i], divided by the count for mean (NaN when it is 0, as 0/0
// in PyTorch).
// Each thread sums a fixed stride of rows in double, then a fixed tree.
__global__ void __launch_bounds__(kReduceThreads)
reduce_losses_kernel(float* loss, const float* __restrict__ losses, index_t N, Scaling scaling) {
  const float count = scaling.mean ? scaling.count(loss) : 1.0f;
  double total = 0.0;
  for (index_t i = threadIdx.x; i < N; i += blockDim.x) total += losses[i];
  total = block_reduce(total, SumOp{}, 0.0);  // its barrier orders the reads of loss[0] above
  if (threadIdx.x == 0) *loss = scaling.mean ? (count > 0.0f ? float(total / count) : NAN) : float(total);
}

void launch(float* loss, float* losses, float* grad, const float* logits,
            const std::int64_t* index_target, const float* prob_target, index_t N, index_t C,
            Reduction reduction, std::int64_t ignore_index, cudaStream_t stream) {
  require(N >= 0 && C >= 0, "softmax_cross_entropy: negative dimension");
  require(N == 0 || C > 0, "softmax_cross_entropy: logits has 0 classes");
  const bool mean = reduction == Reduction::mean;
  const Scaling scaling{mean, mean && index_target != nullptr, static_cast<float>(N)};
  if (scaling.count_on_device)
    PYDL_LAUNCH(count_targets_kernel, dim3(1), dim3(kReduceThreads), 0, stream)(
        loss, index_target, N, ignore_index);
  if (N > 0) {
    const dim3 grid = row_grid(N, C), block(kRowBlockThreads);
    if (block_per_row(C))
      PYDL_LAUNCH((cross_entropy_rows_kernel<true>), grid, block, 0, stream)(
          losses, grad, loss, logits, index_target, prob_target, N, C, ignore_index, scaling);
    else
      PYDL_LAUNCH((cross_entropy_rows_kernel<false>), grid, block, 0, stream)(
          losses, grad, loss, logits, index_target, prob_target, N, C, ignore_index, scaling);
  }
  PYDL_LAUNCH(reduce_losses_kernel, dim3(1), dim3(kReduceThreads), 0, stream)(loss, losses, N, scaling);
}

}  // namespace loss_detail

void softmax_cross_entropy_index(float* loss, float* losses, float* grad, const float* logits,
                                 const std::int64_t* target, index_t N, index_t C,
                                 Reduction reduction, std::int64_t ignore_index,
                                 cudaStream_t stream) {
  loss_detail::launch(loss, losses, grad, logits, target, nullptr, N, C, reduction, ignore_index,
                      stream);
}

void softmax_cross_entropy_prob(float* loss, float* losses, float* grad, const float* logits,
                                const float* target, index_t N, index_t C, Reduction reduction,
                                cudaStream_t stream) {
  loss_detail::launch(loss, losses, grad, logits, nullptr, target, N, C, reduction, 0, stream);
}

}  // namespace pydl::cuda
