// Batch normalization and layer normalization, forward and backward.
#pragma once
#include "common.h"

namespace pydl {

// ---- batch norm ------------------------------------------------------------
// x, y, dy, dx are (N, C, S): S = H*W for (N, C, H, W) input, 1 for (N, C).
// Per channel c, over the M = N*S values:
//   xhat = (x - mean_c) * invstd_c,  y = gamma_c * xhat + beta_c
// gamma/beta may be null (affine=False: gamma = 1, beta = 0). Sums accumulate
// in double; threads take ranges of channels, so results do not depend on the
// thread count.

// Training: mean and invstd = 1/sqrt(var + eps) (biased var) of the batch go
// to `mean`/`invstd` (C,). When running_mean/running_var are not null they are
// updated: r = (1 - momentum) r + momentum s, with the unbiased var M/(M-1) var.
void batch_norm_forward_train(float* y, float* mean, float* invstd, float* running_mean,
                              float* running_var, const float* x, const float* gamma,
                              const float* beta, index_t N, index_t C, index_t S, float eps,
                              float momentum);

// Inference: normalizes with the given statistics (mean, invstd) (C,).
void batch_norm_forward_eval(float* y, const float* x, const float* mean, const float* invstd,
                             const float* gamma, const float* beta, index_t N, index_t C,
                             index_t S);

// dgamma_c = sum dy xhat, dbeta_c = sum dy (skipped when null). With batch
// statistics (training) the statistics depend on x:
//   dx = gamma invstd (dy - dbeta_c / M - xhat dgamma_c / M)
// otherwise (fixed running statistics) dx = gamma invstd dy.
void batch_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* mean, const float* invstd, const float* gamma, index_t N,
                         index_t C, index_t S, bool batch_stats);

// ---- layer norm ------------------------------------------------------------
// x, y are (M, D): each row is normalized over its D values (the trailing
// normalized_shape), then scaled by gamma and shifted by beta, both (D,) and
// nullable. mean and rstd = 1/sqrt(var + eps) are (M,).
void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                        const float* beta, index_t M, index_t D, float eps);

// With g = dy * gamma:  dx = rstd (g - mean(g) - xhat mean(g xhat)) per row;
// dgamma = sum over rows dy xhat, dbeta = sum over rows dy (skipped when null;
// threads take column ranges, so the sums are in row order on any thread count).
void layer_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* mean, const float* rstd, const float* gamma, index_t M,
                         index_t D);

}  // namespace pydl
