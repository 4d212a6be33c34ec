// Fused optimizer updates. Each optimizer is one struct of optim_math.h (shared
// with the CUDA kernels) whose apply<L>() states its formula once, over a lane
// policy L: one float for the portable path, simd::Ymm (8 floats) or simd::Zmm
// (16 floats) for the vector paths (simd_lanes.h). stream() runs apply over
// the parameters and their state arrays, element by element or a vector at a
// time, on as many threads as the total size pays for. The update is memory-bound
// (Adam moves 7 floats per element), so one pass that keeps everything in
// registers is the whole optimization; a call over all of a model's parameters
// also spares the per-call cost that dominates small ones.
#include "optim.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

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

// One parameter's range [begin, end) on the active instruction set.
template <class Op>
void stream_range(const Op& op, float* const* ptr, index_t begin, index_t end) {
#if PYDL_X86
  if (use_avx512()) return stream_avx512(op, ptr, begin, end);
  if (use_avx2()) return stream_avx2(op, ptr, begin, end);
#endif
  stream_portable(op, ptr, begin, end);
}

// Runs `op` over every parameter: ptr[t] are parameter t's arrays, first[t] the
// number of elements before it when the parameters are laid end to end (first
// has one more entry, the total). Each thread takes an equal share of that
// concatenation, i.e. a run of (parameter, range) items, so small and large
// parameters balance; a share's boundary inside a parameter is rounded up to a
// cache line of that parameter, so no two threads write one line. Every element
// gets the same arithmetic wherever the boundaries fall (a tail runs masked), so
// the result does not depend on the thread count or on how the parameters are
// grouped into calls.
template <class Op>
void stream(const Op& op, const std::vector<std::array<float*, Op::arrays>>& ptr,
            const std::vector<index_t>& first) {
  const index_t total = first.back();
  auto aligned = [&](index_t at) {
    if (at >= total) return total;
    const std::size_t t = std::upper_bound(first.begin(), first.end(), at) - first.begin() - 1;
    const index_t offset = at - first[t];
    const index_t rounded = (offset + kCacheLineFloats - 1) / kCacheLineFloats * kCacheLineFloats;
    return first[t] + std::min(rounded, first[t + 1] - first[t]);
  };
  parallel_for(total, threads_for(double(total), kGrain), kCacheLineFloats,
               [&](index_t begin, index_t end) {
    begin = aligned(begin);
    end = aligned(end);
    std::size_t t = std::upper_bound(first.begin(), first.end(), begin) - first.begin() - 1;
    for (; t + 1 < first.size() && first[t] < end; ++t) {
      const index_t lo = std::max(begin, first[t]) - first[t];
      const index_t hi = std::min(end, first[t + 1]) - first[t];
      if (lo < hi) stream_range(op, ptr[t].data(), lo, hi);
    }
  });
}

// Runs `op` over the parameters, their gradients and the state arrays its
// options use (`used`); the others are passed on as null.
template <class Op>
void run_updates(const char* kernel, const Op& op, const std::array<bool, Op::arrays - 2>& used,
                 const UpdateTensor* tensors, int count) {
  std::vector<std::array<float*, Op::arrays>> ptr(count);
  std::vector<index_t> first(count + 1, 0);
  for (int t = 0; t < count; ++t) {
    const UpdateTensor& u = tensors[t];
    optim_math::require_states<Op>(kernel, used, u.state);
    ptr[t][0] = u.param;
    ptr[t][1] = const_cast<float*>(u.grad);
    for (int k = 0; k < Op::arrays - 2; ++k) ptr[t][k + 2] = used[k] ? u.state[k] : nullptr;
    first[t + 1] = first[t] + u.n;
  }
  stream(op, ptr, first);
}

}  // namespace

void sgd_step(const UpdateTensor* tensors, int count, const SgdOptions& o) {
  run_updates("sgd_step", Sgd::from(o), Sgd::used(o), tensors, count);
}

void rmsprop_step(const UpdateTensor* tensors, int count, const RmspropOptions& o) {
  run_updates("rmsprop_step", Rmsprop::from(o), Rmsprop::used(o), tensors, count);
}

void adagrad_step(const UpdateTensor* tensors, int count, const AdagradOptions& o) {
  run_updates("adagrad_step", Adagrad::from(o), Adagrad::used(o), tensors, count);
}

void adam_step(const UpdateTensor* tensors, int count, const AdamOptions& o) {
  run_updates("adam_step", Adam::from(o), Adam::used(o), tensors, count);
}

}  // namespace pydl
