// Batch norm: one block per channel walks the channel's N*S values (N planes
// of S contiguous floats) with block-wide double reductions, then normalizes
// them in the same kernel. Layer norm: one warp or block per row (RowGroup)
// with shuffle reductions; the column sums of its parameter gradients go to
// 32-column tiles whose 16 row lanes are added in a fixed order.
#include "norm.cuh"

#include <algorithm>
#include <cmath>

namespace pydl::cuda {
namespace norm_detail {

constexpr int kThreads = 256;

// ---- batch norm ------------------------------------------------------------

// A thread's walk over the values of channel c, striding by blockDim.x: value
// j = n*S + s of the channel is x[(n*C + c)*S + s]. The stride is split once
// into whole planes and a remainder, so a step costs no division.
struct ChannelWalk {
  index_t N, C, S, c;
  index_t n0, s0, dn, ds;

  __device__ ChannelWalk(index_t N_, index_t C_, index_t S_, index_t c_)
      : N(N_), C(C_), S(S_), c(c_), n0(threadIdx.x / S_), s0(threadIdx.x % S_),
        dn(blockDim.x / S_), ds(blockDim.x % S_) {}

  template <class Body>
  __device__ __forceinline__ void each(const Body& body) const {
    for (index_t n = n0, s = s0; n < N;) {
      body((n * C + c) * S + s);
      s += ds;
      n += dn;
      if (s >= S) s -= S, ++n;
    }
  }
};

// y = x scale + shift with scale = gamma invstd, shift = beta - mean scale.
__device__ __forceinline__ void normalize_channel(float* y, const float* x, const ChannelWalk& walk,
                                                  float mean, float invstd, const float* gamma,
                                                  const float* beta) {
  const float scale = (gamma ? gamma[walk.c] : 1.0f) * invstd;
  const float shift = (beta ? beta[walk.c] : 0.0f) - mean * scale;
  walk.each([&](index_t i) { y[i] = x[i] * scale + shift; });
}

// Two passes (the mean, then squared deviations) avoid the cancellation of
// E[x^2] - E[x]^2.
__global__ void __launch_bounds__(kThreads)
batch_norm_forward_train_kernel(float* __restrict__ y, float* __restrict__ mean,
                                float* __restrict__ invstd, float* __restrict__ running_mean,
                                float* __restrict__ running_var, const float* __restrict__ x,
                                const float* __restrict__ gamma, const float* __restrict__ beta,
                                index_t N, index_t C, index_t S, float eps, float momentum) {
  const ChannelWalk walk(N, C, S, blockIdx.x);
  const index_t M = N * S;
  double sum = 0.0;
  walk.each([&](index_t i) { sum += x[i]; });
  sum = block_reduce(sum, SumOp{}, 0.0);
  const double mu = M ? sum / M : 0.0;
  double squares = 0.0;
  walk.each([&](index_t i) {
    const double d = x[i] - mu;
    squares += d * d;
  });
  squares = block_reduce(squares, SumOp{}, 0.0);
  const double var = M ? squares / M : 0.0;
  const float mean_c = static_cast<float>(mu);
  const float invstd_c = static_cast<float>(1.0 / sqrt(var + eps));
  if (threadIdx.x == 0) {
    const index_t c = walk.c;
    mean[c] = mean_c;
    invstd[c] = invstd_c;
    if (running_mean) {
      running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mu);
      const double unbiased = M > 1 ? squares / (M - 1) : var;
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * unbiased);
    }
  }
  normalize_channel(y, x, walk, mean_c, invstd_c, gamma, beta);
}

__global__ void __launch_bounds__(kThreads)
batch_norm_eval_statistics_kernel(float* __restrict__ mean, float* __restrict__ invstd,
                                  const float* __restrict__ running_mean,
                                  const float* __restrict__ running_var, index_t C, float eps) {
  const index_t c = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  mean[c] = running_mean[c];
  invstd[c] = static_cast<float>(1.0 / sqrt(static_cast<double>(running_var[c]) + eps));
}

// Elementwise over all N*C*S values (any channel may be small): c = (e / S) % C.
__global__ void __launch_bounds__(kThreads)
batch_norm_forward_eval_kernel(float* __restrict__ y, const float* __restrict__ x,
                               const float* __restrict__ mean, const float* __restrict__ invstd,
                               const float* __restrict__ gamma, const float* __restrict__ beta,
                               index_t N, index_t C, index_t S) {
  const index_t total = N * C * S, stride = index_t(gridDim.x) * blockDim.x;
  for (index_t e = index_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const index_t c = (e / S) % C;
    const float scale = (gamma ? gamma[c] : 1.0f) * invstd[c];
    const float shift = (beta ? beta[c] : 0.0f) - mean[c] * scale;
    y[e] = x[e] * scale + shift;
  }
}

__global__ void __launch_bounds__(kThreads)
batch_norm_backward_kernel(float* __restrict__ dx, float* __restrict__ dgamma,
                           float* __restrict__ dbeta, const float* __restrict__ dy,
                           const float* __restrict__ x, const float* __restrict__ mean,
                           const float* __restrict__ invstd, const float* __restrict__ gamma,
                           index_t N, index_t C, index_t S, bool batch_stats) {
  const ChannelWalk walk(N, C, S, blockIdx.x);
  const index_t c = walk.c, M = N * S;
  const float mu = mean[c], r = invstd[c];
  double sum_dy = 0.0, sum_dy_xhat = 0.0;
  walk.each([&](index_t i) {
    sum_dy += dy[i];
    sum_dy_xhat += static_cast<double>(dy[i]) * ((x[i] - mu) * r);
  });
  sum_dy = block_reduce(sum_dy, SumOp{}, 0.0);
  sum_dy_xhat = block_reduce(sum_dy_xhat, SumOp{}, 0.0);
  if (threadIdx.x == 0) {
    if (dgamma) dgamma[c] = static_cast<float>(sum_dy_xhat);
    if (dbeta) dbeta[c] = static_cast<float>(sum_dy);
  }
  if (!dx) return;
  const float scale = (gamma ? gamma[c] : 1.0f) * r;
  if (batch_stats && M > 0) {
    const float mean_dy = static_cast<float>(sum_dy / M);
    const float mean_dy_xhat = static_cast<float>(sum_dy_xhat / M);
    walk.each([&](index_t i) {
      const float xhat = (x[i] - mu) * r;
      dx[i] = scale * (dy[i] - mean_dy - xhat * mean_dy_xhat);
    });
  } else {
    walk.each([&](index_t i) { dx[i] = scale * dy[i]; });
  }
}

// ---- layer norm ------------------------------------------------------------

template <bool kBlockPerRow>
__global__ void __launch_bounds__(kRowBlockThreads)
layer_norm_forward_kernel(float* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd,
                          const float* __restrict__ x, const float* __restrict__ gamma,
                          const float* __restrict__ beta, index_t M, index_t D, float eps) {
  const RowGroup<kBlockPerRow> g;
  if (g.row >= M) return;  // a whole warp (never part of one) past the last row
  const float* xr = x + g.row * D;
  float* yr = y + g.row * D;
  float sum = 0.0f;
  for (index_t d = g.rank; d < D; d += g.size) sum += xr[d];
  sum = g.reduce(sum, SumOp{}, 0.0f);
  const float mu = D ? static_cast<float>(static_cast<double>(sum) / D) : 0.0f;
  float squares = 0.0f;
  for (index_t d = g.rank; d < D; d += g.size) {
    const float dev = xr[d] - mu;
    squares += dev * dev;
  }
  squares = g.reduce(squares, SumOp{}, 0.0f);
  const float r = static_cast<float>(1.0 / sqrt((D ? static_cast<double>(squares) / D : 0.0) + eps));
  if (g.rank == 0) {
    mean[g.row] = mu;
    rstd[g.row] = r;
  }
  for (index_t d = g.rank; d < D; d += g.size)
    yr[d] = (xr[d] - mu) * r * (gamma ? gamma[d] : 1.0f) + (beta ? beta[d] : 0.0f);
}

template <bool kBlockPerRow>
__global__ void __launch_bounds__(kRowBlockThreads)
layer_norm_backward_input_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                 const float* __restrict__ x, const float* __restrict__ mean,
                                 const float* __restrict__ rstd, const float* __restrict__ gamma,
                                 index_t M, index_t D) {
  const RowGroup<kBlockPerRow> g;
  if (g.row >= M) return;
  const index_t offset = g.row * D;
  const float mu = mean[g.row], r = rstd[g.row];
  auto g_at = [&](index_t d) { return dy[offset + d] * (gamma ? gamma[d] : 1.0f); };
  float sum_g = 0.0f, sum_g_xhat = 0.0f;
  for (index_t d = g.rank; d < D; d += g.size) {
    const float gd = g_at(d);
    sum_g += gd;
    sum_g_xhat += gd * ((x[offset + d] - mu) * r);
  }
  sum_g = g.reduce(sum_g, SumOp{}, 0.0f);
  sum_g_xhat = g.reduce(sum_g_xhat, SumOp{}, 0.0f);
  const float mean_g = D ? sum_g / static_cast<float>(D) : 0.0f;
  const float mean_g_xhat = D ? sum_g_xhat / static_cast<float>(D) : 0.0f;
  for (index_t d = g.rank; d < D; d += g.size)
    dx[offset + d] = r * (g_at(d) - mean_g - (x[offset + d] - mu) * r * mean_g_xhat);
}

// dgamma[d] = sum_m dy[m, d] xhat[m, d], dbeta[d] = sum_m dy[m, d]. A block
// owns 32 columns; its 16 row lanes (threadIdx.y) sum rows y, y + 16, ...
// (a warp reads 32 consecutive floats of a row), then lane 0 adds the 16
// partial sums in order.
constexpr int kColumnTile = 32, kRowLanes = 16;

__global__ void __launch_bounds__(kColumnTile * kRowLanes)
layer_norm_backward_params_kernel(float* __restrict__ dgamma, float* __restrict__ dbeta,
                                  const float* __restrict__ dy, const float* __restrict__ x,
                                  const float* __restrict__ mean, const float* __restrict__ rstd,
                                  index_t M, index_t D) {
  __shared__ float partial_gamma[kRowLanes][kColumnTile + 1];  // +1: no bank conflicts
  __shared__ float partial_beta[kRowLanes][kColumnTile + 1];
  const index_t d = index_t(blockIdx.x) * kColumnTile + threadIdx.x;
  float sum_gamma = 0.0f, sum_beta = 0.0f;
  if (d < D) {
    for (index_t m = threadIdx.y; m < M; m += kRowLanes) {
      const float g = dy[m * D + d];
      sum_gamma += g * ((x[m * D + d] - mean[m]) * rstd[m]);
      sum_beta += g;
    }
  }
  partial_gamma[threadIdx.y][threadIdx.x] = sum_gamma;
  partial_beta[threadIdx.y][threadIdx.x] = sum_beta;
  __syncthreads();
  if (threadIdx.y != 0 || d >= D) return;
  for (int lane = 1; lane < kRowLanes; ++lane) {
    sum_gamma += partial_gamma[lane][threadIdx.x];
    sum_beta += partial_beta[lane][threadIdx.x];
  }
  if (dgamma) dgamma[d] = sum_gamma;
  if (dbeta) dbeta[d] = sum_beta;
}

inline unsigned grid_for(index_t items) {
  return static_cast<unsigned>(
      std::min<index_t>(ceil_div(items, kThreads), index_t(multiprocessor_count()) * 8));
}

}  // namespace norm_detail

using namespace norm_detail;

void batch_norm_forward_train(float* y, float* mean, float* invstd, float* running_mean,
                              float* running_var, const float* x, const float* gamma,
                              const float* beta, index_t N, index_t C, index_t S, float eps,
                              float momentum, cudaStream_t stream) {
  if (C == 0) return;
  // The walk divides by S: an empty plane (S = 0) is passed as no planes.
  PYDL_LAUNCH(batch_norm_forward_train_kernel, dim3(static_cast<unsigned>(C)), dim3(kThreads), 0,
              stream)(y, mean, invstd, running_mean, running_var, x, gamma, beta, S ? N : 0, C,
                      std::max<index_t>(S, 1), eps, momentum);
}

void batch_norm_eval_statistics(float* mean, float* invstd, const float* running_mean,
                                const float* running_var, index_t C, float eps,
                                cudaStream_t stream) {
  if (C == 0) return;
  PYDL_LAUNCH(batch_norm_eval_statistics_kernel, dim3(ceil_div(C, kThreads)), dim3(kThreads), 0,
              stream)(mean, invstd, running_mean, running_var, C, eps);
}

void batch_norm_forward_eval(float* y, const float* x, const float* mean, const float* invstd,
                             const float* gamma, const float* beta, index_t N, index_t C,
                             index_t S, cudaStream_t stream) {
  if (N * C * S == 0) return;
  PYDL_LAUNCH(batch_norm_forward_eval_kernel, dim3(grid_for(N * C * S)), dim3(kThreads), 0,
              stream)(y, x, mean, invstd, gamma, beta, N, C, S);
}

void batch_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* mean, const float* invstd, const float* gamma, index_t N,
                         index_t C, index_t S, bool batch_stats, cudaStream_t stream) {
  if (C == 0 || (!dx && !dgamma && !dbeta)) return;
  PYDL_LAUNCH(batch_norm_backward_kernel, dim3(static_cast<unsigned>(C)), dim3(kThreads), 0,
              stream)(dx, dgamma, dbeta, dy, x, mean, invstd, gamma, S ? N : 0, C,
                      std::max<index_t>(S, 1), batch_stats);
}

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                        const float* beta, index_t M, index_t D, float eps, cudaStream_t stream) {
  if (M == 0) return;
  const dim3 grid = row_grid(M, D), block(kRowBlockThreads);
  if (block_per_row(D))
    PYDL_LAUNCH(layer_norm_forward_kernel<true>, grid, block, 0, stream)(y, mean, rstd, x, gamma,
                                                                        beta, M, D, eps);
  else
    PYDL_LAUNCH(layer_norm_forward_kernel<false>, grid, block, 0, stream)(y, mean, rstd, x, gamma,
                                                                         beta, M, D, eps);
}

void layer_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* mean, const float* rstd, const float* gamma, index_t M,
                         index_t D, cudaStream_t stream) {
  if (dx && M > 0) {
    const dim3 grid = row_grid(M, D), block(kRowBlockThreads);
    if (block_per_row(D))
      PYDL_LAUNCH(layer_norm_backward_input_kernel<true>, grid, block, 0, stream)(
          dx, dy, x, mean, rstd, gamma, M, D);
    else
      PYDL_LAUNCH(layer_norm_backward_input_kernel<false>, grid, block, 0, stream)(
          dx, dy, x, mean, rstd, gamma, M, D);
  }
  if ((dgamma || dbeta) && D > 0)
    PYDL_LAUNCH(layer_norm_backward_params_kernel, dim3(ceil_div(D, kColumnTile)),
                dim3(kColumnTile, kRowLanes), 0, stream)(dgamma, dbeta, dy, x, mean, rstd, M, D);
}

}  // namespace pydl::cuda
