// Vector math written once over the vector width W (simd_lanes.h: Ymm, 8
// floats, or Zmm, 16): exp, exp(-x^2/2), the normal CDF (erf), sigmoid, tanh,
// and the row reductions (max, sum of exp) that softmax and the cross-entropy
// share. Every function is always inlined into its caller, which must be
// compiled for W's instruction set (a PYDL_TARGET_* function) and called only
// when that path is active; row_max / row_sum_exp at the end choose the path.
// Both widths run the same operations in the same order, so they give the
// same bits lane for lane.
// Polynomial coefficients are least-squares fits on Chebyshev nodes (relative
// error weighting), rounded to float.
#pragma once
#include <cmath>

#include "common.h"
#include "simd_lanes.h"

#if PYDL_X86
#include <immintrin.h>

#define PYDL_SIMD_INLINE inline __attribute__((always_inline))

namespace pydl::simd {

// Lanes 0..k-1 on (k in [0, 8]): for maskload/maskstore of a row's tail on ymm.
PYDL_TARGET_AVX2 inline __m256i tail_mask(index_t k) { return Ymm::tail(k).m; }

// exp(x), max error about 1 ulp over the whole float range (subnormal results
// included). exp(x) = 2^n * e^r with n = round(x / ln 2), r = x - n ln 2 in
// [-ln2/2, ln2/2] (ln 2 split in two so n*ln2_hi is exact), e^r = 1 + r +
// r^2 P(r) with P of degree 4. n comes from adding 1.5 * 2^23, which leaves
// round(x / ln 2) in the low mantissa bits.
//
// For |x| <= 87 the result is a normal float and 2^n is applied by adding n to
// the exponent field of e^r. Vectors with a lane outside that range (or NaN)
// take exp_wide_range, which applies 2^n as 2^(n/2) * 2^(n - n/2) so both
// factors stay normal for every n in [-159, 128]: inputs are clamped to
// [-110, 89], which still gives 0 below -103.9 and inf above 88.73, and NaN
// propagates (max/min return their second operand when one is NaN).
template <class W>
struct ExpReduced {
  typename W::V n_shifted;  // x / ln 2 + 1.5 * 2^23: round(x / ln 2) sits in the low bits
  typename W::V n;          // round(x / ln 2)
  typename W::V er;         // e^r
};

template <class W, class V = typename W::V>
PYDL_SIMD_INLINE ExpReduced<W> exp_reduce(V x) {
  const V shift = 12582912.0f;  // 1.5 * 2^23
  const V n_shifted = W::fmadd(x, 1.44269504088896341f, shift);
  const V n = n_shifted - shift;
  V r = W::fnmadd(n, 0.693145751953125f, x);
  r = W::fnmadd(n, 1.428606765330187045e-06f, r);
  V p = 1.3751407e-3f;
  p = W::fmadd(p, r, 8.368916e-3f);
  p = W::fmadd(p, r, 4.1669533e-2f);
  p = W::fmadd(p, r, 0.16666518f);
  p = W::fmadd(p, r, 0.49999988f);
  p = W::fmadd(p, r * r, r);
  return {n_shifted, n, p + V(1.0f)};
}

template <class W, class V = typename W::V>
PYDL_SIMD_INLINE V exp_wide_range(V x) {
  x = W::vmax(V(-110.0f), x);
  x = W::vmin(V(89.0f), x);
  const ExpReduced<W> e = exp_reduce<W>(x);
  V s1, s2;
  W::pow2_halves(e.n, s1, s2);
  return (e.er * s1) * s2;
}

template <class W, class V = typename W::V>
PYDL_SIMD_INLINE V exp(V x) {
  if (W::any(W::not_less_equal(W::abs(x), 87.0f))) return exp_wide_range<W>(x);  // or NaN
  const ExpReduced<W> e = exp_reduce<W>(x);
  // The low 9 bits of n_shifted's bits are n mod 512; << 23 puts n in the exponent.
  return W::add_to_exponent(e.er, e.n_shifted);
}

// exp(-x^2 / 2) without the error of rounding x^2: x*x = h + e exactly (FMA),
// so exp(-(h + e)/2) = exp(-h/2) * (1 - e/2) to within float precision. |x|
// is capped at 20 (the result is 0 from 14.4 on) so that x = inf gives 0.
template <class W, class V = typename W::V>
PYDL_SIMD_INLINE V exp_neg_half_square(V x) {
  x = W::vmin(V(20.0f), W::abs(x));  // NaN stays
  const V h = x * x;
  const V e = W::fmsub(x, x, h);
  return exp<W>(h * V(-0.5f)) * W::fnmadd(e, 0.5f, 1.0f);
}

// erfc(a) * exp(a^2) for a >= 0, relative error ~2e-7 (a few ulp). With
// t = 1 / (1 + a/2), erfc(a) exp(a^2) = t Q(t - 1/2), Q of degree 9 fitted on
// a in [0, 10.5] (beyond it erfc underflows anyway, so a is clamped there).
// t is the exactly rounded 1/(1 + a/2) corrected for the rounding of 1 + a/2
// and of the division, since erfc amplifies any error in t.
template <class W, class V = typename W::V>
PYDL_SIMD_INLINE V erfc_scaled(V a) {
  const V one = 1.0f;
  const V h = W::vmin(a, 10.5f) * V(0.5f);
  const V s = one + h;  // 1 + h = s + s_err exactly (TwoSum)
  const V b = s - one;
  const V s_err = (one - (s - b)) + (h - b);
  V t = one / s;
  const V residual = W::fnmadd(t, s, one);  // 1 - t*s exactly
  t = W::fmadd(t, W::fnmadd(s_err, t, residual), t);
  const V u = t - V(0.5f);
  V q = 0.01205465942621231f;
  q = W::fmadd(q, u, -0.06748178601264954f);
  q = W::fmadd(q, u, 0.046264294534921646f);
  q = W::fmadd(q, u, 0.09735100716352463f);
  q = W::fmadd(q, u, -0.10292264819145203f);
  q = W::fmadd(q, u, -0.17202334105968475f);
  q = W::fmadd(q, u, 0.14574135839939117f);
  q = W::fmadd(q, u, 0.5589430928230286f);
  q = W::fmadd(q, u, 0.6871609687805176f);
  q = W::fmadd(q, u, 0.5107913613319397f);
  return t * q;
}

// The standard normal CDF Phi(x) = erfc(-x/sqrt2) / 2, given g = exp(-x^2/2)
// (the caller often needs g again for the density). With a = |x|/sqrt2,
// erfc(a) = g * erfc_scaled(a); Phi = erfc(a)/2 for x < 0 (no cancellation, so
// the left tail keeps its relative accuracy) and 1 - erfc(a)/2 for x >= 0.
template <class W, class V = typename W::V>
PYDL_SIMD_INLINE V normal_cdf(V x, V g) {
  const V a = W::abs(x) * V(0.70710678118654752f);
  const V half_erfc = (g * erfc_scaled<W>(a)) * V(0.5f);
  const V upper = V(1.0f) - half_erfc;
  return W::select(W::sign_set(x), half_erfc, upper);  // sign bit of x picks the lower tail
}

// sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, e = exp(-|x|):
// exp never overflows and both tails keep their relative accuracy.
template <class W, class V = typename W::V>
PYDL_SIMD_INLINE V sigmoid(V x) {
  const V e = exp<W>(W::minus_abs(x));  // exp(-|x|)
  const V s = V(1.0f) / (V(1.0f) + e);
  return W::select(W::sign_set(x), e * s, s);
}

// tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|), for |x| >= 0.625; below,
// where 1 - e would cancel, the odd polynomial x + x^3 P(x^2) (max 0.7 ulp).
template <class W, class V = typename W::V>
PYDL_SIMD_INLINE V tanh(V x) {
  const V one = 1.0f;
  const V ax = W::abs(x);
  const V e = exp<W>(ax * V(-2.0f));
  const V large = W::with_sign_of(x, (one - e) / (one + e));
  const V x2 = x * x;
  V p = 0.0021489840000867844f;
  p = W::fmadd(p, x2, -0.008184662088751793f);
  p = W::fmadd(p, x2, 0.021703999489545822f);
  p = W::fmadd(p, x2, -0.05394745245575905f);
  p = W::fmadd(p, x2, 0.13333211839199066f);
  p = W::fmadd(p, x2, -0.3333333134651184f);
  const V small = W::fmadd(x * x2, p, x);
  return W::select(W::less(ax, 0.625f), small, large);
}

// max over a row; NaN may be dropped here, but it reaches the row's sum of exp.
template <class W, class V = typename W::V>
PYDL_SIMD_INLINE float row_max(const float* x, index_t n) {
  V m = -INFINITY;
  index_t i = 0;
  for (; i + W::width <= n; i += W::width) m = W::vmax(m, W::load(x + i));
  if (i < n) m = W::vmax(m, W::load_or(x + i, W::tail(n - i), -INFINITY));
  return W::hmax(m);
}

// sum exp(x - m), accumulated in double; writes each exp(x - m) to e unless
// null. `next` (or null) is the row to be processed next: it is prefetched
// into L1 meanwhile, since the hardware prefetcher stops at page boundaries
// and a row is about a page.
template <class W, class V = typename W::V>
PYDL_SIMD_INLINE double row_sum_exp(float* e, const float* x, float m, index_t n,
                                    const float* next) {
  const V vm = m;
  typename W::WideSum sum;
  V part = 0.0f;  // float lanes over 8 vectors at a time, then into double:
  int terms = 0;  // each lane adds at most 8 values in [0, 1] in float
  index_t i = 0;
  for (; i + W::width <= n; i += W::width) {
    if (next) _mm_prefetch(reinterpret_cast<const char*>(next + i), _MM_HINT_T0);
    const V v = exp<W>(W::load(x + i) - vm);
    if (e) W::store(e + i, v);
    part = part + v;
    if (++terms == 8) {
      sum.add(part);
      part = 0.0f;
      terms = 0;
    }
  }
  if (i < n) {
    const typename W::Mask k = W::tail(n - i);
    const V v = W::keep_lanes(k, exp<W>(W::load(x + i, k) - vm));
    if (e) W::store(e + i, k, v);
    part = part + v;
  }
  sum.add(part);
  return sum.total();
}

// The row reductions' entry points for each vector path.
PYDL_TARGET_AVX2 PYDL_FLATTEN inline float row_max_avx2(const float* x, index_t n) {
  return row_max<Ymm>(x, n);
}
PYDL_TARGET_AVX512 PYDL_FLATTEN inline float row_max_avx512(const float* x, index_t n) {
  return row_max<Zmm>(x, n);
}
PYDL_TARGET_AVX2 PYDL_FLATTEN inline double row_sum_exp_avx2(float* e, const float* x, float m,
                                                             index_t n, const float* next) {
  return row_sum_exp<Ymm>(e, x, m, n, next);
}
PYDL_TARGET_AVX512 PYDL_FLATTEN inline double row_sum_exp_avx512(float* e, const float* x,
                                                                 float m, index_t n,
                                                                 const float* next) {
  return row_sum_exp<Zmm>(e, x, m, n, next);
}

}  // namespace pydl::simd

#endif  // PYDL_X86

namespace pydl {

// The row reductions on the best path the CPU allows (portable: libm, double sums).
inline float row_max(const float* x, index_t n) {
#if PYDL_X86
  if (use_avx512()) return simd::row_max_avx512(x, n);
  if (use_avx2()) return simd::row_max_avx2(x, n);
#endif
  float m = -INFINITY;
  for (index_t i = 0; i < n; ++i) m = std::fmax(m, x[i]);
  return m;
}

inline double row_sum_exp(float* e, const float* x, float m, index_t n,
                          [[maybe_unused]] const float* next = nullptr) {
#if PYDL_X86
  if (use_avx512()) return simd::row_sum_exp_avx512(e, x, m, n, next);
  if (use_avx2()) return simd::row_sum_exp_avx2(e, x, m, n, next);
#endif
  double s = 0;
  for (index_t i = 0; i < n; ++i) {
    const float v = std::exp(x[i] - m);
    if (e) e[i] = v;
    s += v;
  }
  return s;
}

}  // namespace pydl
