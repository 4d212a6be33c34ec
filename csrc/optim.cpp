// Fused optimizer updates. Each optimizer is one struct of optim_math.h (shared
// with the CUDA kernels) whose apply<L>() states its formula once, over a lane
// policy L: one float for the portable path, F8 (8 floats in an AVX2 register)
// for the vector path. stream() runs apply over
// the parameter and its state arrays, element by element or 8 at a time, on as
// many threads as the size pays for. The update is memory-bound (Adam moves
// 7 floats per element), so one pass that keeps everything in registers is the
// whole optimization.
#include "optim.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "optim_math.h"
#include "parallel.h"
#include "simd_math.h"

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
struct Avx2Lanes {
  PYDL_TARGET_AVX2 static F8 fmadd(F8 a, F8 b, F8 c) {
    return F8(_mm256_fmadd_ps(a.v, b.v, c.v));
  }
  PYDL_TARGET_AVX2 static F8 sqrt(F8 a) { return F8(_mm256_sqrt_ps(a.v)); }
  PYDL_TARGET_AVX2 static F8 max(F8 a, F8 b) { return F8(_mm256_max_ps(b.v, a.v)); }
};
#endif

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
// flatten inlines apply<Avx2Lanes> and every lane operation into this AVX2 loop. The
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
    op.template apply<Avx2Lanes>(x);
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k] && k != 1) _mm256_storeu_ps(ptr[k] + i, x[k].v);
  }
  if (i < end) {
    const __m256i mask = simd::tail_mask(end - i);
    for (int k = 0; k < Op::arrays; ++k)
      if (ptr[k]) x[k] = F8(_mm256_maskload_ps(ptr[k] + i, mask));
    op.template apply<Avx2Lanes>(x);
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
