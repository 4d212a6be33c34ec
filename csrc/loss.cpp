// PLACEHOLDER reference softmax cross-entropy (replaced by the fused kernel).
#include "loss.h"

#include <cmath>

namespace pydl {

static double row_ce(float* grad, const float* z, const float* t, std::int64_t idx, index_t C, float scale) {
  float m = -INFINITY; for (index_t c = 0; c < C; ++c) m = std::fmax(m, z[c]);
  double s = 0; for (index_t c = 0; c < C; ++c) s += std::exp(z[c] - m);
  double lse = m + std::log(s), dot = 0;
  for (index_t c = 0; c < C; ++c) {
    float tc = t ? t[c] : (c == idx ? 1.f : 0.f);
    dot += double(tc) * z[c];
    if (grad) grad[c] = scale * float(std::exp(z[c] - lse) - tc);
  }
  return lse - dot;
}

double softmax_cross_entropy_index(float* losses, float* grad, const float* logits, const std::int64_t* target,
                                   index_t N, index_t C, Reduction reduction, std::int64_t ignore_index) {
  index_t count = 0; for (index_t i = 0; i < N; ++i) count += target[i] != ignore_index;
  float scale = reduction == Reduction::mean ? (count ? 1.f / count : 0.f) : 1.f;
  double total = 0;
  for (index_t i = 0; i < N; ++i) {
    if (target[i] == ignore_index) { losses[i] = 0; if (grad) for (index_t c = 0; c < C; ++c) grad[i * C + c] = 0; continue; }
    losses[i] = float(row_ce(grad ? grad + i * C : nullptr, logits + i * C, nullptr, target[i], C, scale));
    total += losses[i];
  }
  return reduction == Reduction::mean ? (count ? total / count : 0.0) : total;
}

double softmax_cross_entropy_prob(float* losses, float* grad, const float* logits, const float* target,
                                  index_t N, index_t C, Reduction reduction) {
  float scale = reduction == Reduction::mean ? (N ? 1.f / N : 0.f) : 1.f;
  double total = 0;
  for (index_t i = 0; i < N; ++i) {
    losses[i] = float(row_ce(grad ? grad + i * C : nullptr, logits + i * C, target + i * C, 0, C, scale));
    total += losses[i];
  }
  return reduction == Reduction::mean ? (N ? total / N : 0.0) : total;
}

}  // namespace pydl
