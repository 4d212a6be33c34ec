// The per-element formulas of the fused optimizer updates (csrc/optim.h),
// written once for the CPU kernels (csrc/optim.cpp) and the CUDA kernels
// (cuda/optim.cu), with the argument checks both bindings share.
//
// Each optimizer is a struct made from its options on the host (the float
// constants derived in double first, as PyTorch does in Python, then rounded
// once) whose apply<L>(x) updates one lane of x: x[0] the parameter, x[1] the
// gradient (never stored back), x[2..] its state arrays, named in `states`;
// used(options) says which of those the options read (the others may be null).
// L is a lane policy:
//   L::V           the lane: a float, or 8 / 16 floats in a ymm / zmm register;
//   L::fmadd(a,b,c) a*b + c, fused or not as the path's reference does;
//   L::sqrt(a), L::max(a, b) = a < b ? b : a.
// The order of float operations is part of the formula: the CUDA kernels match
// the CPU's vector path bit for bit.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "common.h"
#include "optim.h"

#if defined(__CUDACC__)
#define PYDL_HOST_DEVICE __host__ __device__
#else
#define PYDL_HOST_DEVICE
#endif

namespace pydl::optim_math {

// The update counter of Adagrad and Adam counts this update: 1 on the first.
inline void require_step(std::int64_t step, const char* kernel) {
  require(step >= 1, std::string(kernel) + ": step must be >= 1 (it counts this update), got " +
                         std::to_string(step));
}

// PyTorch's constructor checks of the hyperparameters, made where the update
// runs so that every caller of a kernel gets them: "kernel: lr must be >= 0,
// got -1". NaN fails every rule.
inline void require_option(bool ok, const char* kernel, const char* name, const char* rule,
                           double value) {
  require(ok, std::string(kernel) + ": " + name + " must be " + rule + ", got " +
                  std::to_string(value));
}
inline void require_non_negative(const char* kernel, const char* name, double value) {
  require_option(value >= 0, kernel, name, ">= 0", value);
}
inline void require_beta(const char* kernel, const char* name, double value) {
  require_option(value >= 0 && value < 1, kernel, name, "in [0, 1)", value);
}

// Throws unless every state array that `used` marks is given (not null).
template <class Op>
void require_states(const char* kernel, const std::array<bool, Op::arrays - 2>& used,
                    float* const* state) {
  for (int k = 0; k < Op::arrays - 2; ++k)
    require(!used[k] || state[k],
            std::string(kernel) + ": " + Op::states[k] + " is required with these options");
}

// lerp(a, b, w) = a + w (b - a), or b - (b - a)(1 - w) when |w| >= 0.5, the two
// forms PyTorch's lerp picks between so that both ends stay exact.
template <class L, class V>
PYDL_HOST_DEVICE inline V lerp(V a, V b, float w) {
  return fabsf(w) < 0.5f ? L::fmadd(V(w), b - a, a) : L::fmadd(b - a, V(-(1.0f - w)), b);
}

struct Sgd {
  static constexpr int arrays = 3;         // param, grad, momentum buffer
  float lr, momentum, keep, weight_decay;  // keep = 1 - dampening
  bool nesterov, maximize, first_step;

  static constexpr const char* states[] = {"momentum_buffer"};
  static std::array<bool, 1> used(const SgdOptions& o) { return {o.momentum != 0}; }
  static Sgd from(const SgdOptions& o) {
    for (auto [name, value] : {std::pair{"lr", o.lr}, std::pair{"momentum", o.momentum},
                               std::pair{"weight_decay", o.weight_decay}})
      require_non_negative("sgd_step", name, value);
    require(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
            "sgd_step: Nesterov momentum needs momentum > 0 and dampening 0");
    return {float(o.lr), float(o.momentum), float(1.0 - o.dampening), float(o.weight_decay),
            o.nesterov, o.maximize, o.first_step};
  }
  template <class L, class V>
  PYDL_HOST_DEVICE void apply(V* x) const {
    V& p = x[0];
    V g = maximize ? -x[1] : x[1];
    if (weight_decay != 0) g = L::fmadd(p, V(weight_decay), g);
    if (momentum != 0) {
      V& buf = x[2];
      buf = first_step ? g : L::fmadd(g, V(keep), buf * V(momentum));
      g = nesterov ? L::fmadd(buf, V(momentum), g) : buf;
    }
    p = L::fmadd(g, V(-lr), p);
  }
};

struct Rmsprop {
  static constexpr int arrays = 5;  // param, grad, square_avg, grad_avg, momentum buffer
  float lr, alpha, one_minus_alpha, eps, weight_decay, momentum;
  bool centered, maximize;

  static constexpr const char* states[] = {"square_avg", "grad_avg", "momentum_buffer"};
  static std::array<bool, 3> used(const RmspropOptions& o) {
    return {true, o.centered, o.momentum > 0};
  }
  static Rmsprop from(const RmspropOptions& o) {
    for (auto [name, value] : {std::pair{"lr", o.lr}, std::pair{"alpha", o.alpha},
                               std::pair{"eps", o.eps}, std::pair{"momentum", o.momentum},
                               std::pair{"weight_decay", o.weight_decay}})
      require_non_negative("rmsprop_step", name, value);
    return {float(o.lr), float(o.alpha), float(1.0 - o.alpha), float(o.eps),
            float(o.weight_decay), float(o.momentum), o.centered, o.maximize};
  }
  template <class L, class V>
  PYDL_HOST_DEVICE void apply(V* x) const {
    V& p = x[0];
    V g = maximize ? -x[1] : x[1];
    if (weight_decay != 0) g = L::fmadd(p, V(weight_decay), g);
    V& square_avg = x[2];
    square_avg = square_avg * V(alpha) + V(one_minus_alpha) * g * g;
    V avg;
    if (centered) {
      V& grad_avg = x[3];
      grad_avg = lerp<L>(grad_avg, g, one_minus_alpha);
      avg = L::sqrt(square_avg - grad_avg * grad_avg);
    } else {
      avg = L::sqrt(square_avg);
    }
    avg = avg + V(eps);
    if (momentum > 0) {
      V& buf = x[4];
      buf = buf * V(momentum) + g / avg;
      p = L::fmadd(buf, V(-lr), p);
    } else {
      p = p + V(-lr) * g / avg;
    }
  }
};

struct Adagrad {
  static constexpr int arrays = 3;  // param, grad, sum
  float neg_clr, weight_decay, eps;  // neg_clr = -lr / (1 + (step - 1) lr_decay)
  bool maximize;

  static constexpr const char* states[] = {"state_sum"};
  static std::array<bool, 1> used(const AdagradOptions&) { return {true}; }
  static Adagrad from(const AdagradOptions& o) {
    require_step(o.step, "adagrad_step");
    for (auto [name, value] : {std::pair{"lr", o.lr}, std::pair{"lr_decay", o.lr_decay},
                               std::pair{"eps", o.eps}, std::pair{"weight_decay", o.weight_decay}})
      require_non_negative("adagrad_step", name, value);
    const double clr = o.lr / (1.0 + double(o.step - 1) * o.lr_decay);
    return {float(-clr), float(o.weight_decay), float(o.eps), o.maximize};
  }
  template <class L, class V>
  PYDL_HOST_DEVICE void apply(V* x) const {
    V& p = x[0];
    V g = maximize ? -x[1] : x[1];
    if (weight_decay != 0) g = L::fmadd(p, V(weight_decay), g);
    V& sum = x[2];
    sum = sum + g * g;
    p = p + V(neg_clr) * g / (L::sqrt(sum) + V(eps));
  }
};

struct Adam {
  static constexpr int arrays = 5;  // param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq
  float decay;                      // AdamW: p *= decay = 1 - lr weight_decay
  float weight_decay;               // Adam: g += weight_decay p
  float one_minus_beta1, beta2, one_minus_beta2, eps;
  float neg_step_size;              // -lr / (1 - beta1^step)
  float bias_correction2_sqrt;      // sqrt(1 - beta2^step)
  bool amsgrad, decoupled, maximize;

  static constexpr const char* states[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  static std::array<bool, 3> used(const AdamOptions& o) { return {true, true, o.amsgrad}; }
  static Adam from(const AdamOptions& o) {
    require_step(o.step, "adam_step");
    for (auto [name, value] : {std::pair{"lr", o.lr}, std::pair{"eps", o.eps},
                               std::pair{"weight_decay", o.weight_decay}})
      require_non_negative("adam_step", name, value);
    require_beta("adam_step", "beta1", o.beta1);
    require_beta("adam_step", "beta2", o.beta2);
    const double step = double(o.step);
    const double bias_correction1 = 1.0 - std::pow(o.beta1, step);
    const double bias_correction2 = 1.0 - std::pow(o.beta2, step);
    return {float(1.0 - o.lr * o.weight_decay), float(o.weight_decay),
            float(1.0 - o.beta1), float(o.beta2), float(1.0 - o.beta2), float(o.eps),
            float(-(o.lr / bias_correction1)), float(std::sqrt(bias_correction2)),
            o.amsgrad, o.decoupled_weight_decay, o.maximize};
  }
  template <class L, class V>
  PYDL_HOST_DEVICE void apply(V* x) const {
    V& p = x[0];
    V g = maximize ? -x[1] : x[1];
    if (decoupled) p = p * V(decay);
    else if (weight_decay != 0) g = L::fmadd(p, V(weight_decay), g);
    V& m = x[2];
    V& v = x[3];
    m = lerp<L>(m, g, one_minus_beta1);
    v = v * V(beta2) + V(one_minus_beta2) * g * g;
    V second = v;
    if (amsgrad) second = x[4] = L::max(x[4], v);
    const V denom = L::sqrt(second) / V(bias_correction2_sqrt) + V(eps);
    p = p + V(neg_step_size) * m / denom;
  }
};

}  // namespace pydl::optim_math
