// Fused optimizer updates: one pass over each parameter reads the gradient and
// updates the parameter and its state in registers (Adam moves 7 floats per
// element, so the update is memory-bound and the single pass is the whole
// optimization). One launch serves many parameters: blocks are dealt out to
// the parameters in chunks of kChunk elements, and a block looks up its
// parameter in the launch's table (a multi-tensor launch).
//
// The formulas are those of csrc/optim.cpp's vector path, operation for
// operation: fmaf exactly where it fuses a multiply-add, and plain float
// operations elsewhere. This file is compiled with -fmad=false so nvcc does
// not fuse the plain ones on its own; with IEEE sqrt and division (no fast
// math) a step then matches the CPU's bit for bit.
#include "optim.cuh"

#include <algorithm>
#include <cmath>

namespace pydl::cuda {
namespace optim_detail {

constexpr int kThreads = 256;
constexpr index_t kChunk = 16 * kThreads;  // elements per block
constexpr int kMaxTensors = 32;            // parameters per launch (the table is a kernel argument)

// lerp(a, b, w) = a + w (b - a), or b - (b - a)(1 - w) when |w| >= 0.5, so that
// both ends stay exact (PyTorch's choice).
__device__ __forceinline__ float lerp(float a, float b, float w) {
  return fabsf(w) < 0.5f ? fmaf(w, b - a, a) : fmaf(b - a, -(1.0f - w), b);
}

// x[0] is the parameter, x[1] the gradient (never stored back), x[2..] state.
struct Sgd {
  static constexpr int arrays = 3;         // param, grad, momentum buffer
  float lr, momentum, keep, weight_decay;  // keep = 1 - dampening
  bool nesterov, maximize, first_step;

  __device__ void apply(float* x) const {
    float& p = x[0];
    float g = maximize ? -x[1] : x[1];
    if (weight_decay != 0) g = fmaf(p, weight_decay, g);
    if (momentum != 0) {
      float& buf = x[2];
      buf = first_step ? g : fmaf(g, keep, buf * momentum);
      g = nesterov ? fmaf(buf, momentum, g) : buf;
    }
    p = fmaf(g, -lr, p);
  }
};

struct Rmsprop {
  static constexpr int arrays = 5;  // param, grad, square_avg, grad_avg, momentum buffer
  float lr, alpha, one_minus_alpha, eps, weight_decay, momentum;
  bool centered, maximize;

  __device__ void apply(float* x) const {
    float& p = x[0];
    float g = maximize ? -x[1] : x[1];
    if (weight_decay != 0) g = fmaf(p, weight_decay, g);
    float& square_avg = x[2];
    square_avg = square_avg * alpha + one_minus_alpha * g * g;
    float avg;
    if (centered) {
      float& grad_avg = x[3];
      grad_avg = lerp(grad_avg, g, one_minus_alpha);
      avg = sqrtf(square_avg - grad_avg * grad_avg);
    } else {
      avg = sqrtf(square_avg);
    }
    avg = avg + eps;
    if (momentum > 0) {
      float& buf = x[4];
      buf = buf * momentum + g / avg;
      p = fmaf(buf, -lr, p);
    } else {
      p = p + -lr * g / avg;
    }
  }
};

struct Adagrad {
  static constexpr int arrays = 3;  // param, grad, sum
  float neg_clr, weight_decay, eps;
  bool maximize;

  __device__ void apply(float* x) const {
    float& p = x[0];
    float g = maximize ? -x[1] : x[1];
    if (weight_decay != 0) g = fmaf(p, weight_decay, g);
    float& sum = x[2];
    sum = sum + g * g;
    p = p + neg_clr * g / (sqrtf(sum) + eps);
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

  __device__ void apply(float* x) const {
    float& p = x[0];
    float g = maximize ? -x[1] : x[1];
    if (decoupled) p = p * decay;
    else if (weight_decay != 0) g = fmaf(p, weight_decay, g);
    float& m = x[2];
    float& v = x[3];
    m = lerp(m, g, one_minus_beta1);
    v = v * beta2 + one_minus_beta2 * g * g;
    float second = v;
    if (amsgrad) second = x[4] = x[4] < v ? v : x[4];
    const float denom = sqrtf(second) / bias_correction2_sqrt + eps;
    p = p + neg_step_size * m / denom;
  }
};

// The parameters of one launch: arrays[t][k] is array k of parameter t (null
// when unused), and blocks [first_block[t], first_block[t+1]) cover it.
template <int kArrays>
struct TensorTable {
  float* arrays[kMaxTensors][kArrays];
  index_t size[kMaxTensors];
  unsigned first_block[kMaxTensors + 1];
  int count;
};

template <class Op>
__global__ void __launch_bounds__(kThreads)
update_kernel(Op op, TensorTable<Op::arrays> table) {
  int t = 0;
  while (blockIdx.x >= table.first_block[t + 1]) ++t;
  float* ptr[Op::arrays];
#pragma unroll
  for (int k = 0; k < Op::arrays; ++k) ptr[k] = table.arrays[t][k];
  const index_t begin = index_t(blockIdx.x - table.first_block[t]) * kChunk;
  const index_t end = begin + kChunk < table.size[t] ? begin + kChunk : table.size[t];
  for (index_t i = begin + threadIdx.x; i < end; i += kThreads) {
    float x[Op::arrays];
#pragma unroll
    for (int k = 0; k < Op::arrays; ++k) x[k] = ptr[k] ? ptr[k][i] : 0.0f;
    op.apply(x);
#pragma unroll
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k] && k != 1) ptr[k][i] = x[k];
  }
}

// Fills tables of up to kMaxTensors parameters and launches one kernel per
// table. used[k] says whether state array k is read (the options decide).
template <class Op>
void launch_updates(const Op& op, const UpdateTensor* tensors, int count,
                    const bool (&used)[Op::arrays - 2], cudaStream_t stream) {
  TensorTable<Op::arrays> table{};
  auto flush = [&] {
    if (table.count)
      PYDL_LAUNCH(update_kernel<Op>, dim3(table.first_block[table.count]), dim3(kThreads), 0,
                  stream)(op, table);
    table = {};
  };
  for (int i = 0; i < count; ++i) {
    const UpdateTensor& u = tensors[i];
    if (u.n == 0) continue;
    const int t = table.count++;
    table.arrays[t][0] = u.param;
    table.arrays[t][1] = const_cast<float*>(u.grad);
    for (int k = 0; k < Op::arrays - 2; ++k) table.arrays[t][k + 2] = used[k] ? u.state[k] : nullptr;
    table.size[t] = u.n;
    table.first_block[t + 1] = table.first_block[t] + ceil_div(u.n, kChunk);
    if (table.count == kMaxTensors) flush();
  }
  flush();
}

}  // namespace optim_detail

using namespace optim_detail;

// The float constants are derived in double exactly as csrc/optim.cpp does.

void sgd_step(const UpdateTensor* tensors, int count, const SgdOptions& o, cudaStream_t stream) {
  const bool momentum = o.momentum != 0;
  for (int i = 0; i < count; ++i)
    require(!momentum || tensors[i].state[0], "sgd_step: momentum != 0 needs a momentum buffer");
  const Sgd op{float(o.lr), float(o.momentum), float(1.0 - o.dampening), float(o.weight_decay),
               o.nesterov, o.maximize, o.first_step};
  launch_updates(op, tensors, count, {momentum}, stream);
}

void rmsprop_step(const UpdateTensor* tensors, int count, const RmspropOptions& o,
                  cudaStream_t stream) {
  const bool momentum = o.momentum > 0;
  for (int i = 0; i < count; ++i) {
    require(tensors[i].state[0], "rmsprop_step: square_avg is required");
    require(!o.centered || tensors[i].state[1], "rmsprop_step: centered needs grad_avg");
    require(!momentum || tensors[i].state[2], "rmsprop_step: momentum > 0 needs a momentum buffer");
  }
  const Rmsprop op{float(o.lr), float(o.alpha), float(1.0 - o.alpha), float(o.eps),
                   float(o.weight_decay), float(o.momentum), o.centered, o.maximize};
  launch_updates(op, tensors, count, {true, o.centered, momentum}, stream);
}

void adagrad_step(const UpdateTensor* tensors, int count, const AdagradOptions& o,
                  cudaStream_t stream) {
  require(o.step >= 1, "adagrad_step: step must be >= 1 (it counts this update)");
  for (int i = 0; i < count; ++i) require(tensors[i].state[0], "adagrad_step: state_sum is required");
  const double clr = o.lr / (1.0 + double(o.step - 1) * o.lr_decay);
  const Adagrad op{float(-clr), float(o.weight_decay), float(o.eps), o.maximize};
  launch_updates(op, tensors, count, {true}, stream);
}

void adam_step(const UpdateTensor* tensors, int count, const AdamOptions& o, cudaStream_t stream) {
  require(o.step >= 1, "adam_step: step must be >= 1 (it counts this update)");
  for (int i = 0; i < count; ++i) {
    require(tensors[i].state[0] && tensors[i].state[1], "adam_step: exp_avg and exp_avg_sq are required");
    require(!o.amsgrad || tensors[i].state[2], "adam_step: amsgrad needs max_exp_avg_sq");
  }
  const double step = double(o.step);
  const double bias_correction1 = 1.0 - std::pow(o.beta1, step);
  const double bias_correction2 = 1.0 - std::pow(o.beta2, step);
  const Adam op{float(1.0 - o.lr * o.weight_decay), float(o.weight_decay),
                float(1.0 - o.beta1), float(o.beta2), float(1.0 - o.beta2), float(o.eps),
                float(-(o.lr / bias_correction1)), float(std::sqrt(bias_correction2)),
                o.amsgrad, o.decoupled_weight_decay, o.maximize};
  launch_updates(op, tensors, count, {true, true, o.amsgrad}, stream);
}

}  // namespace pydl::cuda
