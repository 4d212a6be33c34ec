// Fused optimizer updates. Each optimizer is one struct whose apply<V>() states
// its formula once, over a "lane" type V: float for the portable path, F8 (8
// floats in an AVX2 register) for the vector path. stream() runs apply over
// the parameter and its state arrays, element by element or 8 at a time, on as
// many threads as the size pays for. The update is memory-bound (Adam moves
// 7 floats per element), so one pass that keeps everything in registers is the
// whole optimization.
#include "optim.h"

#include <algorithm>
#include <cmath>

#include "parallel.h"
#include "simd_math.h"

namespace pydl {
namespace {

// Elements per thread below which another thread costs more than it saves.
constexpr double kGrain = 1 << 15;
constexpr index_t kCacheLineFloats = 16;

// ---- lanes: the operations the formulas use ---------------------------------

// Portable lane. fmadd is unfused here (PyTorch's scalar loops do a*b + c).
inline float fmadd(float a, float b, float c) { return a * b + c; }
inline float lane_sqrt(float a) { return std::sqrt(a); }
inline float lane_max(float a, float b) { return a < b ? b : a; }

#if PYDL_X86
// AVX2 lane: 8 floats; fmadd is a fused multiply-add, as in PyTorch's
// vectorized add/lerp kernels.
struct F8 {
  __m256 v;
  PYDL_TARGET_AVX2 F8() : v(_mm256_setzero_ps()) {}
  PYDL_TARGET_AVX2 F8(float x) : v(_mm256_set1_ps(x)) {}  // NOLINT: broadcasts a constant
  PYDL_TARGET_AVX2 explicit F8(__m256 x) : v(x) {}
};
PYDL_TARGET_AVX2 inline F8 operator+(F8 a, F8 b) { return F8(_mm256_add_ps(a.v, b.v)); }
PYDL_TARGET_AVX2 inline F8 operator-(F8 a, F8 b) { return F8(_mm256_sub_ps(a.v, b.v)); }
PYDL_TARGET_AVX2 inline F8 operator*(F8 a, F8 b) { return F8(_mm256_mul_ps(a.v, b.v)); }
PYDL_TARGET_AVX2 inline F8 operator/(F8 a, F8 b) { return F8(_mm256_div_ps(a.v, b.v)); }
PYDL_TARGET_AVX2 inline F8 operator-(F8 a) {
  return F8(_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f)));
}
PYDL_TARGET_AVX2 inline F8 fmadd(F8 a, F8 b, F8 c) { return F8(_mm256_fmadd_ps(a.v, b.v, c.v)); }
PYDL_TARGET_AVX2 inline F8 lane_sqrt(F8 a) { return F8(_mm256_sqrt_ps(a.v)); }
PYDL_TARGET_AVX2 inline F8 lane_max(F8 a, F8 b) { return F8(_mm256_max_ps(b.v, a.v)); }
#endif

// lerp(a, b, w) = a + w (b - a), or b - (b - a)(1 - w) when |w| >= 0.5, the two
// forms PyTorch's lerp picks between so that both ends stay exact.
template <class V>
V lerp(V a, V b, float w) {
  return std::fabs(w) < 0.5f ? fmadd(V(w), b - a, a) : fmadd(b - a, V(-(1.0f - w)), b);
}

// ---- the formulas ------------------------------------------------------------
// x[0] is the parameter, x[1] the gradient (never stored back), x[2..] state.

struct Sgd {
  static constexpr int arrays = 3;  // param, grad, momentum buffer
  float lr, momentum, keep, weight_decay;  // keep = 1 - dampening
  bool nesterov, maximize, first_step;

  template <class V>
  void apply(V* x) const {
    V& p = x[0];
    V g = maximize ? -x[1] : x[1];
    if (weight_decay != 0) g = fmadd(p, V(weight_decay), g);
    if (momentum != 0) {
      V& buf = x[2];
      buf = first_step ? g : fmadd(g, V(keep), buf * V(momentum));
      g = nesterov ? fmadd(buf, V(momentum), g) : buf;
    }
    p = fmadd(g, V(-lr), p);
  }
};

struct Rmsprop {
  static constexpr int arrays = 5;  // param, grad, square_avg, grad_avg, momentum buffer
  float lr, alpha, one_minus_alpha, eps, weight_decay, momentum;
  bool centered, maximize;

  template <class V>
  void apply(V* x) const {
    V& p = x[0];
    V g = maximize ? -x[1] : x[1];
    if (weight_decay != 0) g = fmadd(p, V(weight_decay), g);
    V& square_avg = x[2];
    square_avg = square_avg * V(alpha) + V(one_minus_alpha) * g * g;
    V avg;
    if (centered) {
      V& grad_avg = x[3];
      grad_avg = lerp(grad_avg, g, one_minus_alpha);
      avg = lane_sqrt(square_avg - grad_avg * grad_avg);
    } else {
      avg = lane_sqrt(square_avg);
    }
    avg = avg + V(eps);
    if (momentum > 0) {
      V& buf = x[4];
      buf = buf * V(momentum) + g / avg;
      p = fmadd(buf, V(-lr), p);
    } else {
      p = p + V(-lr) * g / avg;
    }
  }
};

struct Adagrad {
  static constexpr int arrays = 3;  // param, grad, sum
  float neg_clr, weight_decay, eps;
  bool maximize;

  template <class V>
  void apply(V* x) const {
    V& p = x[0];
    V g = maximize ? -x[1] : x[1];
    if (weight_decay != 0) g = fmadd(p, V(weight_decay), g);
    V& sum = x[2];
    sum = sum + g * g;
    p = p + V(neg_clr) * g / (lane_sqrt(sum) + V(eps));
  }
};

struct Adam {
  static constexpr int arrays = 5;  // param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq
  float decay;                // AdamW: p *= decay = 1 - lr weight_decay
  float weight_decay;         // Adam: g += weight_decay p
  float one_minus_beta1, beta2, one_minus_beta2, eps;
  float neg_step_size;        // -lr / (1 - beta1^step)
  float bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  bool amsgrad, decoupled, maximize;

  template <class V>
  void apply(V* x) const {
    V& p = x[0];
    V g = maximize ? -x[1] : x[1];
    if (decoupled) p = p * V(decay);
    else if (weight_decay != 0) g = fmadd(p, V(weight_decay), g);
    V& m = x[2];
    V& v = x[3];
    m = lerp(m, g, one_minus_beta1);
    v = v * V(beta2) + V(one_minus_beta2) * g * g;
    V second = v;
    if (amsgrad) second = x[4] = lane_max(x[4], v);
    const V denom = lane_sqrt(second) / V(bias_correction2_sqrt) + V(eps);
    p = p + V(neg_step_size) * m / denom;
  }
};

// ---- running a formula over the arrays ------------------------------------------
// ptr[k] is array k (null when the options leave it unused); [begin, end) a range.

template <class Op>
void stream_portable(const Op& op, float* const* ptr, index_t begin, index_t end) {
  float x[Op::arrays] = {};
  for (index_t i = begin; i < end; ++i) {
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k]) x[k] = ptr[k][i];
    op.apply(x);
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k] && k != 1) ptr[k][i] = x[k];
  }
}

#if PYDL_X86
// flatten inlines apply<F8> and every lane operation into this AVX2 loop. The
// tail (< 8) goes through masked loads and stores, so it gets exactly the same
// arithmetic as the body.
template <class Op>
PYDL_TARGET_AVX2 __attribute__((flatten)) void stream_avx2(const Op& op, float* const* ptr,
                                                           index_t begin, index_t end) {
  F8 x[Op::arrays];
  index_t i = begin;
  for (; i + 8 <= end; i += 8) {
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k]) x[k] = F8(_mm256_loadu_ps(ptr[k] + i));
    op.apply(x);
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k] && k != 1) _mm256_storeu_ps(ptr[k] + i, x[k].v);
  }
  if (i < end) {
    const __m256i mask = simd::tail_mask(end - i);
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k]) x[k] = F8(_mm256_maskload_ps(ptr[k] + i, mask));
    op.apply(x);
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k] && k != 1) _mm256_maskstore_ps(ptr[k] + i, mask, x[k].v);
  }
}
#endif

template <class Op>
void stream(const Op& op, float* const* ptr, index_t n) {
  parallel_for(n, threads_for(double(n), kGrain), kCacheLineFloats,
               [&](index_t begin, index_t end) {
#if PYDL_X86
    if (use_avx2()) return stream_avx2(op, ptr, begin, end);
#endif
    stream_portable(op, ptr, begin, end);
  });
}

}  // namespace

void sgd_step(float* param, const float* grad, float* momentum_buffer, index_t n,
              const SgdOptions& o) {
  require(o.momentum == 0 || momentum_buffer, "sgd_step: momentum != 0 needs a momentum buffer");
  const Sgd op{float(o.lr), float(o.momentum), float(1.0 - o.dampening), float(o.weight_decay),
               o.nesterov, o.maximize, o.first_step};
  float* ptr[] = {param, const_cast<float*>(grad), o.momentum != 0 ? momentum_buffer : nullptr};
  stream(op, ptr, n);
}

void rmsprop_step(float* param, const float* grad, float* square_avg, float* grad_avg,
                  float* momentum_buffer, index_t n, const RmspropOptions& o) {
  require(!o.centered || grad_avg, "rmsprop_step: centered needs grad_avg");
  require(o.momentum <= 0 || momentum_buffer, "rmsprop_step: momentum > 0 needs a momentum buffer");
  const Rmsprop op{float(o.lr), float(o.alpha), float(1.0 - o.alpha), float(o.eps),
                   float(o.weight_decay), float(o.momentum), o.centered, o.maximize};
  float* ptr[] = {param, const_cast<float*>(grad), square_avg, o.centered ? grad_avg : nullptr,
                  o.momentum > 0 ? momentum_buffer : nullptr};
  stream(op, ptr, n);
}

void adagrad_step(float* param, const float* grad, float* state_sum, index_t n,
                  const AdagradOptions& o) {
  require(o.step >= 1, "adagrad_step: step must be >= 1 (it counts this update)");
  const double clr = o.lr / (1.0 + double(o.step - 1) * o.lr_decay);
  const Adagrad op{float(-clr), float(o.weight_decay), float(o.eps), o.maximize};
  float* ptr[] = {param, const_cast<float*>(grad), state_sum};
  stream(op, ptr, n);
}

void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
               float* max_exp_avg_sq, index_t n, const AdamOptions& o) {
  require(o.step >= 1, "adam_step: step must be >= 1 (it counts this update)");
  require(!o.amsgrad || max_exp_avg_sq, "adam_step: amsgrad needs max_exp_avg_sq");
  const double step = double(o.step);
  const double bias_correction1 = 1.0 - std::pow(o.beta1, step);
  const double bias_correction2 = 1.0 - std::pow(o.beta2, step);
  const Adam op{float(1.0 - o.lr * o.weight_decay), float(o.weight_decay),
                float(1.0 - o.beta1), float(o.beta2), float(1.0 - o.beta2), float(o.eps),
                float(-(o.lr / bias_correction1)), float(std::sqrt(bias_correction2)),
                o.amsgrad, o.decoupled_weight_decay, o.maximize};
  float* ptr[] = {param, const_cast<float*>(grad), exp_avg, exp_avg_sq,
                  o.amsgrad ? max_exp_avg_sq : nullptr};
  stream(op, ptr, n);
}

}  // namespace pydl
