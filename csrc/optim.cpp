// Fused optimizer updates. Each optimizer is one struct of optim_math.h (shared
// with the CUDA kernels) whose apply<L>() states its formula once, over a lane
// policy L: one float for the portable path, simd::Ymm (8 floats) or simd::Zmm
// (16 floats) for the vector paths (simd_lanes.h). stream() runs apply over
// the parameter and its state arrays, element by element or a vector at a
// time, on as many threads as the size pays for. The update is memory-bound (Adam moves
// 7 floats per element), so one pass that keeps everything in registers is the
// whole optimization.
#include "optim.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "optim_math.h"
#include "parallel.h"
#include "simd_lanes.h"

namespace pydl {
namespace {

// Elements per thread below which another thread costs more than it saves.
constexpr double kGrain = 1 << 15;
constexpr index_t kCacheLineFloats = 16;

// ---- lanes: the operations the formulas (optim_math.h) use -------------------

// Portable lane: one float. fmadd is unfused here (PyTorch's scalar loops do a*b + c).
struct ScalarLanes {
  static float fmadd(float a, float b, float c) { return a * b + c; }
  static float sqrt(float a) { return std::sqrt(a); }
  static float max(float a, float b) { return a < b ? b : a; }
};

// The vector lanes (simd::Ymm, simd::Zmm): fmadd is a fused multiply-add, as
// in PyTorch's vectorized add/lerp kernels, on both widths, so the AVX2 and
// AVX-512 paths give the same bits.

using optim_math::Adagrad;
using optim_math::Adam;
using optim_math::Rmsprop;
using optim_math::Sgd;

// ---- running a formula over the arrays ------------------------------------------
// ptr[k] is array k (null when the options leave it unused); [begin, end) a range.

template <class Op>
void stream_portable(const Op& op, float* const* ptr, index_t begin, index_t end) {
  float x[Op::arrays] = {};
  for (index_t i = begin; i < end; ++i) {
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k]) x[k] = ptr[k][i];
    op.template apply<ScalarLanes>(x);
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k] && k != 1) ptr[k][i] = x[k];
  }
}

#if PYDL_X86
// Full vectors, then the tail (< width) through masked loads and stores, so it
// gets exactly the same arithmetic as the body.
template <class W, class Op>
inline void stream_vector(const Op& op, float* const* ptr, index_t begin, index_t end) {
  typename W::V x[Op::arrays];
  index_t i = begin;
  for (; i + W::width <= end; i += W::width) {
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k]) x[k] = W::load(ptr[k] + i);
    op.template apply<W>(x);
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k] && k != 1) W::store(ptr[k] + i, x[k]);
  }
  if (i < end) {
    const typename W::Mask mask = W::tail(end - i);
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k]) x[k] = W::load(ptr[k] + i, mask);
    op.template apply<W>(x);
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k] && k != 1) W::store(ptr[k] + i, mask, x[k]);
  }
}

// flatten inlines stream_vector, apply and every lane operation into code
// compiled for that ISA.
template <class Op>
PYDL_TARGET_AVX2 __attribute__((flatten)) void stream_avx2(const Op& op, float* const* ptr,
                                                           index_t begin, index_t end) {
  stream_vector<simd::Ymm>(op, ptr, begin, end);
}
template <class Op>
PYDL_TARGET_AVX512 __attribute__((flatten)) void stream_avx512(const Op& op, float* const* ptr,
                                                               index_t begin, index_t end) {
  stream_vector<simd::Zmm>(op, ptr, begin, end);
}
#endif

template <class Op>
void stream(const Op& op, float* const* ptr, index_t n) {
  parallel_for(n, threads_for(double(n), kGrain), kCacheLineFloats,
               [&](index_t begin, index_t end) {
#if PYDL_X86
    if (use_avx512()) return stream_avx512(op, ptr, begin, end);
    if (use_avx2()) return stream_avx2(op, ptr, begin, end);
#endif
    stream_portable(op, ptr, begin, end);
  });
}

// Runs `op` over the parameter, its gradient and the state arrays its options
// use (`used`); the others are passed as null.
template <class Op, std::size_t kStates>
void run_update(const char* kernel, const Op& op, const std::array<bool, kStates>& used,
                float* param, const float* grad, std::array<float*, kStates> state, index_t n) {
  optim_math::require_states<Op>(kernel, used, state.data());
  float* ptr[Op::arrays] = {param, const_cast<float*>(grad)};
  for (std::size_t k = 0; k < kStates; ++k) ptr[k + 2] = used[k] ? state[k] : nullptr;
  stream(op, ptr, n);
}

}  // namespace

void sgd_step(float* param, const float* grad, float* momentum_buffer, index_t n,
              const SgdOptions& o) {
  run_update("sgd_step", Sgd::from(o), Sgd::used(o), param, grad, {momentum_buffer}, n);
}

void rmsprop_step(float* param, const float* grad, float* square_avg, float* grad_avg,
                  float* momentum_buffer, index_t n, const RmspropOptions& o) {
  run_update("rmsprop_step", Rmsprop::from(o), Rmsprop::used(o), param, grad,
             {square_avg, grad_avg, momentum_buffer}, n);
}

void adagrad_step(float* param, const float* grad, float* state_sum, index_t n,
                  const AdagradOptions& o) {
  run_update("adagrad_step", Adagrad::from(o), Adagrad::used(o), param, grad, {state_sum}, n);
}

void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
               float* max_exp_avg_sq, index_t n, const AdamOptions& o) {
  run_update("adam_step", Adam::from(o), Adam::used(o), param, grad,
             {exp_avg, exp_avg_sq, max_exp_avg_sq}, n);
}

}  // namespace pydl
