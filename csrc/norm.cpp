#include "norm.h"

#include <cmath>

#include "parallel.h"

namespace pydl {

namespace {

// Calls body(x_plane, offset) for each of the N planes (S contiguous values) of
// channel c: element s of plane n is at offset (n*C + c)*S + s.
template <class Body>
void for_channel(index_t N, index_t C, index_t S, index_t c, const Body& body) {
  for (index_t n = 0; n < N; ++n) {
    const index_t base = (n * C + c) * S;
    for (index_t s = 0; s < S; ++s) body(base + s);
  }
}

int channel_threads(index_t N, index_t C, index_t S) {
  return threads_for(static_cast<double>(N) * C * S, 1 << 14);
}

void normalize_channel(float* y, const float* x, index_t N, index_t C, index_t S, index_t c,
                       float mean, float invstd, const float* gamma, const float* beta) {
  // y = x * scale + shift, with scale = gamma invstd, shift = beta - mean scale.
  const float scale = (gamma ? gamma[c] : 1.0f) * invstd;
  const float shift = (beta ? beta[c] : 0.0f) - mean * scale;
  for_channel(N, C, S, c, [&](index_t i) { y[i] = x[i] * scale + shift; });
}

// sum_{d < D} term(d): eight float lanes the compiler can keep in one vector
// register (no reassociation needed), added up in double at the end.
template <class Term>
double lane_sum(index_t D, const Term& term) {
  float lanes[8] = {};
  index_t d = 0;
  for (; d + 8 <= D; d += 8)
    for (int j = 0; j < 8; ++j) lanes[j] += term(d + j);
  double total = 0.0;
  for (; d < D; ++d) total += term(d);
  for (float lane : lanes) total += lane;
  return total;
}

}  // namespace

void batch_norm_forward_train(float* y, float* mean, float* invstd, float* running_mean,
                              float* running_var, const float* x, const float* gamma,
                              const float* beta, index_t N, index_t C, index_t S, float eps,
                              float momentum) {
  const index_t M = N * S;
  parallel_for(C, channel_threads(N, C, S), 1, [&](index_t begin, index_t end) {
    for (index_t c = begin; c < end; ++c) {
      // Two passes (mean, then squared deviations) avoid the cancellation of
      // E[x^2] - E[x]^2.
      double sum = 0.0;
      for_channel(N, C, S, c, [&](index_t i) { sum += x[i]; });
      const double mu = M ? sum / M : 0.0;
      double squares = 0.0;
      for_channel(N, C, S, c, [&](index_t i) {
        const double d = x[i] - mu;
        squares += d * d;
      });
      const double var = M ? squares / M : 0.0;
      mean[c] = static_cast<float>(mu);
      invstd[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
      if (running_mean) {
        running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mu);
        const double unbiased = M > 1 ? squares / (M - 1) : var;
        running_var[c] =
            static_cast<float>((1.0 - momentum) * running_var[c] + momentum * unbiased);
      }
      normalize_channel(y, x, N, C, S, c, mean[c], invstd[c], gamma, beta);
    }
  });
}

void batch_norm_forward_eval(float* y, const float* x, const float* mean, const float* invstd,
                             const float* gamma, const float* beta, index_t N, index_t C,
                             index_t S) {
  parallel_for(C, channel_threads(N, C, S), 1, [&](index_t begin, index_t end) {
    for (index_t c = begin; c < end; ++c)
      normalize_channel(y, x, N, C, S, c, mean[c], invstd[c], gamma, beta);
  });
}

void batch_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* mean, const float* invstd, const float* gamma, index_t N,
                         index_t C, index_t S, bool batch_stats) {
  const index_t M = N * S;
  parallel_for(C, channel_threads(N, C, S), 1, [&](index_t begin, index_t end) {
    for (index_t c = begin; c < end; ++c) {
      const float mu = mean[c], r = invstd[c];
      double sum_dy = 0.0, sum_dy_xhat = 0.0;
      for_channel(N, C, S, c, [&](index_t i) {
        sum_dy += dy[i];
        sum_dy_xhat += static_cast<double>(dy[i]) * ((x[i] - mu) * r);
      });
      if (dgamma) dgamma[c] = static_cast<float>(sum_dy_xhat);
      if (dbeta) dbeta[c] = static_cast<float>(sum_dy);
      if (!dx) continue;
      const float scale = (gamma ? gamma[c] : 1.0f) * r;
      if (batch_stats && M > 0) {
        const float mean_dy = static_cast<float>(sum_dy / M);
        const float mean_dy_xhat = static_cast<float>(sum_dy_xhat / M);
        for_channel(N, C, S, c, [&](index_t i) {
          const float xhat = (x[i] - mu) * r;
          dx[i] = scale * (dy[i] - mean_dy - xhat * mean_dy_xhat);
        });
      } else {
        for_channel(N, C, S, c, [&](index_t i) { dx[i] = scale * dy[i]; });
      }
    }
  });
}

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                        const float* beta, index_t M, index_t D, float eps) {
  const int threads = threads_for(static_cast<double>(M) * D, 1 << 14);
  parallel_for(M, threads, 1, [&](index_t begin, index_t end) {
    for (index_t m = begin; m < end; ++m) {
      const float* xr = x + m * D;
      float* yr = y + m * D;
      const float mu_f = static_cast<float>(D ? lane_sum(D, [&](index_t d) { return xr[d]; }) / D
                                                : 0.0);
      const double squares = lane_sum(D, [&](index_t d) {
        const float dev = xr[d] - mu_f;
        return dev * dev;
      });
      const float r = static_cast<float>(1.0 / std::sqrt((D ? squares / D : 0.0) + eps));
      mean[m] = mu_f;
      rstd[m] = r;
      for (index_t d = 0; d < D; ++d)
        yr[d] = (xr[d] - mu_f) * r * (gamma ? gamma[d] : 1.0f) + (beta ? beta[d] : 0.0f);
    }
  });
}

void layer_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* mean, const float* rstd, const float* gamma, index_t M,
                         index_t D) {
  const int threads = threads_for(static_cast<double>(M) * D, 1 << 14);
  if (dx) {
    parallel_for(M, threads, 1, [&](index_t begin, index_t end) {
      for (index_t m = begin; m < end; ++m) {
        const float *xr = x + m * D, *gr = dy + m * D;
        const float mu = mean[m], r = rstd[m];
        auto g_at = [&](index_t d) { return gr[d] * (gamma ? gamma[d] : 1.0f); };
        const double sum_g = lane_sum(D, g_at);
        const double sum_g_xhat =
            lane_sum(D, [&](index_t d) { return g_at(d) * ((xr[d] - mu) * r); });
        const float mean_g = static_cast<float>(D ? sum_g / D : 0.0);
        const float mean_g_xhat = static_cast<float>(D ? sum_g_xhat / D : 0.0);
        float* dxr = dx + m * D;
        for (index_t d = 0; d < D; ++d)
          dxr[d] = r * (g_at(d) - mean_g - (xr[d] - mu) * r * mean_g_xhat);
      }
    });
  }
  if (!dgamma && !dbeta) return;
  // Column ranges of 16 floats (a cache line) per thread; rows in order.
  parallel_for(D, threads, 16, [&](index_t begin, index_t end) {
    for (index_t d = begin; d < end; ++d) {
      if (dgamma) dgamma[d] = 0.0f;
      if (dbeta) dbeta[d] = 0.0f;
    }
    for (index_t m = 0; m < M; ++m) {
      const float *xr = x + m * D, *gr = dy + m * D;
      const float mu = mean[m], r = rstd[m];
      for (index_t d = begin; d < end; ++d) {
        if (dgamma) dgamma[d] += gr[d] * ((xr[d] - mu) * r);
        if (dbeta) dbeta[d] += gr[d];
      }
    }
  });
}

}  // namespace pydl
