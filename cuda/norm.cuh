// Batch normalization and layer normalization on the GPU, with the semantics
// of csrc/norm.h. Pointers are device pointers; each call only enqueues work
// on `stream`.
#pragma once
#include "common.cuh"

namespace pydl::cuda {

// ---- batch norm ------------------------------------------------------------
// x, y, dy, dx are (N, C, S): S = H*W for (N, C, H, W) input, 1 for (N, C).
// Per channel c over its M = N*S values: xhat = (x - mean_c) invstd_c,
// y = gamma_c xhat + beta_c; gamma/beta may be null (gamma = 1, beta = 0).
// One block per channel; the channel sums are block reductions in double, in
// a fixed order, so results are deterministic.

// Training: writes the batch mean and invstd = 1/sqrt(var + eps) (biased var)
// (C,); running_mean/running_var (when not null) become
// (1 - momentum) r + momentum s, with the unbiased var M/(M-1) var.
void batch_norm_forward_train(float* y, float* mean, float* invstd, float* running_mean,
                              float* running_var, const float* x, const float* gamma,
                              const float* beta, index_t N, index_t C, index_t S, float eps,
                              float momentum, cudaStream_t stream);

// Inference statistics: mean = running_mean, invstd = 1/sqrt(running_var + eps)
// (in double, as pydl._C does), all (C,).
void batch_norm_eval_statistics(float* mean, float* invstd, const float* running_mean,
                                const float* running_var, index_t C, float eps,
                                cudaStream_t stream);

// Inference: normalizes with the given statistics (mean, invstd) (C,).
void batch_norm_forward_eval(float* y, const float* x, const float* mean, const float* invstd,
                             const float* gamma, const float* beta, index_t N, index_t C,
                             index_t S, cudaStream_t stream);

// dgamma_c = sum dy xhat, dbeta_c = sum dy (each skipped when null). With batch
// statistics dx = gamma invstd (dy - dbeta_c / M - xhat dgamma_c / M), else
// dx = gamma invstd dy (skipped when null).
void batch_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* mean, const float* invstd, const float* gamma, index_t N,
                         index_t C, index_t S, bool batch_stats, cudaStream_t stream);

// ---- layer norm ------------------------------------------------------------
// x, y are (M, D): each row is normalized over its D values, then scaled by
// gamma and shifted by beta, both (D,) and nullable; mean and rstd =
// 1/sqrt(var + eps) are (M,). Rows go to a warp (D <= 1024) or a block.
void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                        const float* beta, index_t M, index_t D, float eps, cudaStream_t stream);

// With g = dy gamma: dx = rstd (g - mean(g) - xhat mean(g xhat)) per row;
// dgamma = sum over rows dy xhat, dbeta = sum over rows dy. Each output is
// skipped when null; the column sums run in a fixed order (deterministic).
void layer_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* mean, const float* rstd, const float* gamma, index_t M,
                         index_t D, cudaStream_t stream);

}  // namespace pydl::cuda
