// Fused optimizer updates: one pass over each parameter reads the gradient and
// updates the parameter and its state in registers (Adam moves 7 floats per
// element, so the update is memory-bound and the single pass is the whole
// optimization). One launch serves many parameters: blocks are dealt out to
// the parameters in chunks of kChunk elements, and a block looks up its
// parameter in the launch's table (a multi-tensor launch).
//
// The formulas are csrc/optim_math.h's, shared with csrc/optim.cpp, run over
// DeviceLanes: fmaf exactly where the CPU's vector path fuses a multiply-add,
// and plain float operations elsewhere. This file is compiled with -fmad=false
// so nvcc does not fuse the plain ones on its own; with IEEE sqrt and division
// (no fast math) a step then matches the CPU's bit for bit.
#include "optim.cuh"

#include "../csrc/optim_math.h"

namespace pydl::cuda {
namespace optim_detail {

constexpr int kThreads = 256;
constexpr index_t kChunk = 16 * kThreads;  // elements per block
constexpr int kMaxTensors = 32;            // parameters per launch (the table is a kernel argument)

// The lane of the formulas (csrc/optim_math.h): one float, fmaf exactly where
// the CPU's vector path fuses.
struct DeviceLanes {
  static PYDL_HOST_DEVICE float fmadd(float a, float b, float c) { return fmaf(a, b, c); }
  static PYDL_HOST_DEVICE float sqrt(float a) { return sqrtf(a); }
  static PYDL_HOST_DEVICE float max(float a, float b) { return a < b ? b : a; }
};

using optim_math::Adagrad;
using optim_math::Adam;
using optim_math::Rmsprop;
using optim_math::Sgd;

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
    op.template apply<DeviceLanes>(x);
#pragma unroll
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k] && k != 1) ptr[k][i] = x[k];
  }
}

// Fills tables of up to kMaxTensors parameters and launches one kernel per
// table. used[k] says whether state array k is read (the options decide).
template <class Op>
void launch_updates(const char* kernel, const Op& op, const UpdateTensor* tensors, int count,
                    const std::array<bool, Op::arrays - 2>& used, cudaStream_t stream) {
  for (int i = 0; i < count; ++i) optim_math::require_states<Op>(kernel, used, tensors[i].state);
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

void sgd_step(const UpdateTensor* tensors, int count, const SgdOptions& o, cudaStream_t stream) {
  launch_updates("sgd_step", Sgd::from(o), tensors, count, Sgd::used(o), stream);
}

void rmsprop_step(const UpdateTensor* tensors, int count, const RmspropOptions& o,
                  cudaStream_t stream) {
  launch_updates("rmsprop_step", Rmsprop::from(o), tensors, count, Rmsprop::used(o), stream);
}

void adagrad_step(const UpdateTensor* tensors, int count, const AdagradOptions& o,
                  cudaStream_t stream) {
  launch_updates("adagrad_step", Adagrad::from(o), tensors, count, Adagrad::used(o), stream);
}

void adam_step(const UpdateTensor* tensors, int count, const AdamOptions& o, cudaStream_t stream) {
  launch_updates("adam_step", Adam::from(o), tensors, count, Adam::used(o), stream);
}

}  // namespace pydl::cuda
