// Fused optimizer updates: each runs in place over float32 parameters in a
// single pass, reading the gradient and updating the parameter and its state
// arrays together. One call updates a list of parameters with the same options
// (a multi-tensor update: a model's parameters in one call, their elements
// shared out over the threads as if they were one array). The formulas (and the order of their float
// operations) are those of torch.optim's documented algorithms, so a step
// matches PyTorch's to rounding. Hyper-parameters are doubles; each kernel
// derives its float constants (bias corrections, step sizes) in double first,
// as PyTorch does in Python, then rounds them once.
#pragma once
#include <cstdint>

#include "common.h"

namespace pydl {

// One parameter of an update: param (written), grad (read) and up to three
// state arrays, all of n floats. The state arrays, in order, are
//   sgd: momentum_buffer;  rmsprop: square_avg, grad_avg, momentum_buffer;
//   adagrad: state_sum;    adam: exp_avg, exp_avg_sq, max_exp_avg_sq;
// and may be null where the options leave them unused (e.g. no momentum).
// The CUDA kernels (cuda/optim.cuh) take the same table, of device pointers.
struct UpdateTensor {
  float* param;
  const float* grad;
  float* state[3];
  index_t n;
};

// g = +-grad (+ weight_decay * p);
// momentum: buf = g on the first step, else buf = momentum * buf + (1 - dampening) g;
//           g = nesterov ? g + momentum * buf : buf;
// p -= lr * g.
struct SgdOptions {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false, maximize = false;
  bool first_step = false;  // the momentum buffer is set to g, not updated
};
void sgd_step(const UpdateTensor* tensors, int count, const SgdOptions& options);

// g = +-grad (+ weight_decay * p); s = alpha s + (1 - alpha) g^2;
// centered: a = lerp(a, g, 1 - alpha), avg = sqrt(s - a^2) + eps; else avg = sqrt(s) + eps;
// momentum > 0: buf = momentum buf + g / avg, p -= lr buf;  else p -= lr g / avg.
struct RmspropOptions {
  double lr = 0, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0;
  bool centered = false, maximize = false;
};
void rmsprop_step(const UpdateTensor* tensors, int count, const RmspropOptions& options);

// g = +-grad (+ weight_decay * p); sum += g^2;
// p -= clr g / (sqrt(sum) + eps), clr = lr / (1 + (step - 1) lr_decay).
struct AdagradOptions {
  double lr = 0, lr_decay = 0, weight_decay = 0, eps = 1e-10;
  std::int64_t step = 1;  // counts this update (1 on the first)
  bool maximize = false;
};
void adagrad_step(const UpdateTensor* tensors, int count, const AdagradOptions& options);

// Adam: g = +-grad (+ weight_decay * p); AdamW instead p *= 1 - lr weight_decay.
// m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2; amsgrad: vmax = max(vmax, v);
// p -= (lr / (1 - beta1^step)) m / (sqrt(v or vmax) / sqrt(1 - beta2^step) + eps).
struct AdamOptions {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  std::int64_t step = 1;  // counts this update (1 on the first)
  bool amsgrad = false, decoupled_weight_decay = false, maximize = false;
};
void adam_step(const UpdateTensor* tensors, int count, const AdamOptions& options);

}  // namespace pydl
