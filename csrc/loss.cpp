// Fused softmax cross-entropy. Per row of logits z (C floats, which stay in
// L1/L2 across the passes):
//   1. m = max z
//   2. e = exp(z - m), s = sum e (double)
//   3. loss = T log s - sum t (z - m), T = sum t   (= logsumexp(z) - sum t z
//      when T = 1; subtracting m first avoids cancelling large logits)
//      grad = k e - scale t,  k = scale T / s
// While a row is in pass 2 the next row is prefetched. For a large gradient,
// e goes to a per-thread scratch row and pass 3 writes the gradient with
// streaming stores, so its lines are never read from memory first: the kernel
// then moves the bytes of a copy (logits in, gradient out) and no more.
// Rows go to threads in contiguous runs; the reduced loss is summed per fixed
// block of rows in double and the blocks are then added in order, so the
// result is the same for any number of threads.
#include "loss.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "parallel.h"
#include "simd_math.h"

namespace pydl {
namespace {

constexpr index_t kRowsPerBlock = 16;
// Work per thread (logits) below which another thread costs more than it saves.
constexpr double kGrain = 1 << 15;
// Gradients at least this big are written with streaming stores: they will not
// stay in cache beside the logits anyway.
constexpr double kStreamBytes = 8 << 20;

#if PYDL_X86
// g = k e - scale t over C floats (t = probs; no t term when probs is null).
// Template flags keep the per-vector loop free of tests.
template <class W, bool kProbs, bool kStream>
PYDL_SIMD_INLINE void write_grad_vector(float* g, const float* e, const float* probs, float k,
                                        float scale, index_t C) {
  using V = typename W::V;
  const V vk = k, vs = scale;
  index_t i = 0;
  for (; i + W::width <= C; i += W::width) {
    V v = W::load(e + i) * vk;
    if constexpr (kProbs) v = W::fnmadd(W::load(probs + i), vs, v);
    if constexpr (kStream) W::stream(g + i, v);
    else W::store(g + i, v);
  }
  if (i < C) {
    const typename W::Mask m = W::tail(C - i);
    V v = W::load(e + i, m) * vk;
    if constexpr (kProbs) v = W::fnmadd(W::load(probs + i, m), vs, v);
    W::store(g + i, m, v);
  }
}

template <class W>
PYDL_SIMD_INLINE void write_grad_vector(float* g, const float* e, const float* probs, float k,
                                        float scale, index_t C, bool stream) {
  if (probs) {
    if (stream) return write_grad_vector<W, true, true>(g, e, probs, k, scale, C);
    return write_grad_vector<W, true, false>(g, e, probs, k, scale, C);
  }
  if (stream) return write_grad_vector<W, false, true>(g, e, nullptr, k, scale, C);
  write_grad_vector<W, false, false>(g, e, nullptr, k, scale, C);
}

// T = sum t and D = sum t (z - m), in double.
template <class W>
PYDL_SIMD_INLINE void target_sums_vector(double& T, double& D, const float* t, const float* z,
                                         float m, index_t C) {
  using V = typename W::V;
  const V vm = m;
  typename W::WideSum vt, vd;
  index_t c = 0;
  for (; c + W::width <= C; c += W::width) {
    const V tc = W::load(t + c);
    vt.add(tc);
    vd.add(tc * (W::load(z + c) - vm));
  }
  if (c < C) {
    const typename W::Mask k = W::tail(C - c);
    const V tc = W::load(t + c, k);  // masked lanes are 0, so t (z - m) is 0
    vt.add(tc);
    vd.add(tc * (W::load(z + c, k) - vm));
  }
  T = vt.total();
  D = vd.total();
}

PYDL_TARGET_AVX2 PYDL_FLATTEN void write_grad_avx2(float* g, const float* e, const float* probs,
                                                  float k, float scale, index_t C, bool stream) {
  write_grad_vector<simd::Ymm>(g, e, probs, k, scale, C, stream);
}
PYDL_TARGET_AVX512 PYDL_FLATTEN void write_grad_avx512(float* g, const float* e,
                                                      const float* probs, float k, float scale,
                                                      index_t C, bool stream) {
  write_grad_vector<simd::Zmm>(g, e, probs, k, scale, C, stream);
}
PYDL_TARGET_AVX2 PYDL_FLATTEN void target_sums_avx2(double& T, double& D, const float* t,
                                                   const float* z, float m, index_t C) {
  target_sums_vector<simd::Ymm>(T, D, t, z, m, C);
}
PYDL_TARGET_AVX512 PYDL_FLATTEN void target_sums_avx512(double& T, double& D, const float* t,
                                                       const float* z, float m, index_t C) {
  target_sums_vector<simd::Zmm>(T, D, t, z, m, C);
}
#endif

// Pass 3: g = k e - scale probs, or g = k e when probs is null. `stream`: g is
// aligned to the active vector width, C a multiple of it, and the stores
// bypass the cache.
void write_grad(float* g, const float* e, const float* probs, float k, float scale, index_t C,
                [[maybe_unused]] bool stream) {
#if PYDL_X86
  if (use_avx512()) return write_grad_avx512(g, e, probs, k, scale, C, stream);
  if (use_avx2()) return write_grad_avx2(g, e, probs, k, scale, C, stream);
#endif
  for (index_t c = 0; c < C; ++c) g[c] = e[c] * k - (probs ? scale * probs[c] : 0.0f);
}

void target_sums(double& T, double& D, const float* t, const float* z, float m, index_t C) {
#if PYDL_X86
  if (use_avx512()) return target_sums_avx512(T, D, t, z, m, C);
  if (use_avx2()) return target_sums_avx2(T, D, t, z, m, C);
#endif
  T = D = 0;
  for (index_t c = 0; c < C; ++c) {
    T += t[c];
    D += double(t[c]) * (z[c] - m);
  }
}

// Everything one row needs: logits z, the next row (to prefetch), the target
// (probs, or the index), the gradient row g (or null) and where e goes.
struct Row {
  const float* z;
  const float* next;
  const float* probs;
  index_t target;
  float* g;
  float* e;  // g itself, or the thread's scratch row when streaming
  bool stream;
};

double row_loss(const Row& r, index_t C, float scale) {
  const float m = row_max(r.z, C);
  const double s = row_sum_exp(r.g ? r.e : nullptr, r.z, m, C, r.next);
  double T = 1, D;
  if (r.probs) target_sums(T, D, r.probs, r.z, m, C);
  else D = double(r.z[r.target]) - double(m);
  if (r.g) {
    // One-hot target: scale (e/s - 1) = k (e - s) at the target, so e there
    // becomes e - s (exact to a float rounding, no cancellation against k e).
    if (!r.probs) r.e[r.target] = float(double(r.e[r.target]) - s);
    write_grad(r.g, r.e, r.probs, float(scale * T / s), scale, C, r.stream);
  }
  return T * std::log(s) - D;
}

// Computes every row's loss into losses[i] (and its gradient) and returns
// sum_i loss_i, summed per fixed block of rows in double, blocks in order.
// `ignored(i)` rows get loss 0 and a zero gradient.
template <class Ignored>
double cross_entropy_rows(float* losses, float* grad, const float* logits, const float* probs,
                          const std::int64_t* target, index_t N, index_t C, float scale,
                          const Ignored& ignored) {
  const index_t blocks = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  Workspace<double> partial(static_cast<std::size_t>(blocks));
  double* block_sum = partial.get();
  const index_t width = use_avx512() ? 16 : 8;  // floats per vector of the active path
  const bool stream = use_avx2() && grad && double(N) * double(C) * 4 >= kStreamBytes &&
                      C % width == 0 && reinterpret_cast<std::uintptr_t>(grad) % (4 * width) == 0;
  parallel_for(blocks, threads_for(double(N) * double(C), kGrain), 1,
               [&](index_t begin, index_t end) {
    Workspace<float> scratch(stream ? static_cast<std::size_t>(C) : 0);
    for (index_t b = begin; b < end; ++b) {
      double sum = 0;
      for (index_t i = b * kRowsPerBlock; i < std::min(N, (b + 1) * kRowsPerBlock); ++i) {
        float* g = grad ? grad + i * C : nullptr;
        double loss = 0;
        if (ignored(i)) {
          if (g) std::memset(g, 0, sizeof(float) * static_cast<std::size_t>(C));
        } else {
          Row r{logits + i * C, i + 1 < N ? logits + (i + 1) * C : nullptr,
                probs ? probs + i * C : nullptr, probs ? 0 : index_t(target[i]),
                g, stream ? scratch.get() : g, stream};
          loss = row_loss(r, C, scale);
        }
        losses[i] = float(loss);
        sum += loss;
      }
      block_sum[b] = sum;
    }
#if PYDL_X86
    if (stream) _mm_sfence();  // streamed stores visible before the threads join
#endif
  });
  double total = 0;
  for (index_t b = 0; b < blocks; ++b) total += block_sum[b];
  return total;
}

}  // namespace

double softmax_cross_entropy_index(float* losses, float* grad, const float* logits,
                                   const std::int64_t* target, index_t N, index_t C,
                                   Reduction reduction, std::int64_t ignore_index) {
  index_t count = 0;
  for (index_t i = 0; i < N; ++i) count += target[i] != ignore_index;
  const float scale = reduction == Reduction::mean ? (count ? 1.0f / float(count) : 0.0f) : 1.0f;
  const double total = cross_entropy_rows(losses, grad, logits, nullptr, target, N, C, scale,
                                          [=](index_t i) { return target[i] == ignore_index; });
  if (reduction != Reduction::mean) return total;
  return count ? total / double(count) : std::nan("");  // 0/0, as PyTorch
}

double softmax_cross_entropy_prob(float* losses, float* grad, const float* logits,
                                  const float* target, index_t N, index_t C,
                                  Reduction reduction) {
  const float scale = reduction == Reduction::mean ? (N ? 1.0f / float(N) : 0.0f) : 1.0f;
  const double total = cross_entropy_rows(losses, grad, logits, target, nullptr, N, C, scale,
                                          [](index_t) { return false; });
  if (reduction != Reduction::mean) return total;
  return N ? total / double(N) : std::nan("");
}

}  // namespace pydl
