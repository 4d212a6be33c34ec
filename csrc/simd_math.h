// AVX2/FMA math over 8 floats: exp, exp(-x^2/2), the normal CDF (erf), sigmoid,
// tanh, the small helpers (tail masks, horizontal reductions), and the row reductions
// (max, sum of exp) that softmax and the cross-entropy share. The simd::
// functions are compiled for AVX2+FMA only and must be called only when
// use_avx2() is true; row_max / row_sum_exp at the end choose the path.
// Polynomial coefficients are least-squares fits on Chebyshev nodes (relative
// error weighting), rounded to float.
#pragma once
#include <cmath>

#include "common.h"

#if PYDL_X86
#include <immintrin.h>

namespace pydl::simd {

// Lanes 0..k-1 on (k in [0, 8]): for maskload/maskstore of a row's tail.
PYDL_TARGET_AVX2 inline __m256i tail_mask(index_t k) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(k)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

PYDL_TARGET_AVX2 inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

PYDL_TARGET_AVX2 inline double hsum(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

// A sum of floats kept in double lanes (accurate row sums for any length); the
// low and high halves of each vector go to separate accumulators so the adds
// do not wait on each other.
struct WideSum {
  __m256d lo, hi;
  PYDL_TARGET_AVX2 WideSum() : lo(_mm256_setzero_pd()), hi(_mm256_setzero_pd()) {}
  PYDL_TARGET_AVX2 void add(__m256 v) {
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  PYDL_TARGET_AVX2 double total() const { return hsum(_mm256_add_pd(lo, hi)); }
};

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
struct ExpReduced {
  __m256 n_shifted;  // x / ln 2 + 1.5 * 2^23: round(x / ln 2) sits in the low bits
  __m256 n;          // round(x / ln 2)
  __m256 er;         // e^r
};

PYDL_TARGET_AVX2 inline ExpReduced exp_reduce(__m256 x) {
  const __m256 shift = _mm256_set1_ps(12582912.0f);  // 1.5 * 2^23
  const __m256 n_shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), shift);
  const __m256 n = _mm256_sub_ps(n_shifted, shift);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
  __m256 p = _mm256_set1_ps(1.3751407e-3f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.368916e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1669533e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.16666518f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.49999988f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  return {n_shifted, n, _mm256_add_ps(p, _mm256_set1_ps(1.0f))};
}

PYDL_TARGET_AVX2 __attribute__((noinline)) inline __m256 exp_wide_range(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-110.0f), x);
  x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);
  const ExpReduced e = exp_reduce(x);
  const __m256i ni = _mm256_cvtps_epi32(e.n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(e.er, s1), s2);
}

PYDL_TARGET_AVX2 inline __m256 exp(__m256 x) {
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  const __m256 outside = _mm256_cmp_ps(ax, _mm256_set1_ps(87.0f), _CMP_NLE_UQ);  // or NaN
  if (!_mm256_testz_ps(outside, outside)) return exp_wide_range(x);
  const ExpReduced e = exp_reduce(x);
  // The low 9 bits of n_shifted's bits are n mod 512; << 23 puts n in the exponent.
  const __m256i n_exp = _mm256_slli_epi32(_mm256_castps_si256(e.n_shifted), 23);
  return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(e.er), n_exp));
}

// exp(-x^2 / 2) without the error of rounding x^2: x*x = h + e exactly (FMA),
// so exp(-(h + e)/2) = exp(-h/2) * (1 - e/2) to within float precision. |x|
// is capped at 20 (the result is 0 from 14.4 on) so that x = inf gives 0.
PYDL_TARGET_AVX2 inline __m256 exp_neg_half_square(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(20.0f), _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x));  // NaN stays
  const __m256 h = _mm256_mul_ps(x, x);
  const __m256 e = _mm256_fmsub_ps(x, x, h);
  const __m256 half = _mm256_set1_ps(0.5f);
  return _mm256_mul_ps(exp(_mm256_mul_ps(h, _mm256_set1_ps(-0.5f))),
                       _mm256_fnmadd_ps(e, half, _mm256_set1_ps(1.0f)));
}

// erfc(a) * exp(a^2) for a >= 0, relative error ~2e-7 (a few ulp). With
// t = 1 / (1 + a/2), erfc(a) exp(a^2) = t Q(t - 1/2), Q of degree 9 fitted on
// a in [0, 10.5] (beyond it erfc underflows anyway, so a is clamped there).
// t is the exactly rounded 1/(1 + a/2) corrected for the rounding of 1 + a/2
// and of the division, since erfc amplifies any error in t.
PYDL_TARGET_AVX2 inline __m256 erfc_scaled(__m256 a) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 h = _mm256_mul_ps(_mm256_min_ps(a, _mm256_set1_ps(10.5f)), _mm256_set1_ps(0.5f));
  const __m256 s = _mm256_add_ps(one, h);  // 1 + h = s + s_err exactly (TwoSum)
  const __m256 b = _mm256_sub_ps(s, one);
  const __m256 s_err = _mm256_add_ps(_mm256_sub_ps(one, _mm256_sub_ps(s, b)), _mm256_sub_ps(h, b));
  __m256 t = _mm256_div_ps(one, s);
  const __m256 residual = _mm256_fnmadd_ps(t, s, one);  // 1 - t*s exactly
  t = _mm256_fmadd_ps(t, _mm256_fnmadd_ps(s_err, t, residual), t);
  const __m256 u = _mm256_sub_ps(t, _mm256_set1_ps(0.5f));
  __m256 q = _mm256_set1_ps(0.01205465942621231f);
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-0.06748178601264954f));
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(0.046264294534921646f));
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(0.09735100716352463f));
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-0.10292264819145203f));
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-0.17202334105968475f));
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(0.14574135839939117f));
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(0.5589430928230286f));
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(0.6871609687805176f));
  q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(0.5107913613319397f));
  return _mm256_mul_ps(t, q);
}

// The standard normal CDF Phi(x) = erfc(-x/sqrt2) / 2, given g = exp(-x^2/2)
// (the caller often needs g again for the density). With a = |x|/sqrt2,
// erfc(a) = g * erfc_scaled(a); Phi = erfc(a)/2 for x < 0 (no cancellation, so
// the left tail keeps its relative accuracy) and 1 - erfc(a)/2 for x >= 0.
PYDL_TARGET_AVX2 inline __m256 normal_cdf(__m256 x, __m256 g) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 a = _mm256_mul_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(0.70710678118654752f));
  const __m256 half_erfc = _mm256_mul_ps(_mm256_mul_ps(g, erfc_scaled(a)), _mm256_set1_ps(0.5f));
  const __m256 upper = _mm256_sub_ps(_mm256_set1_ps(1.0f), half_erfc);
  return _mm256_blendv_ps(upper, half_erfc, x);  // sign bit of x picks the lower tail
}

// sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, e = exp(-|x|):
// exp never overflows and both tails keep their relative accuracy.
PYDL_TARGET_AVX2 inline __m256 sigmoid(__m256 x) {
  const __m256 e = exp(_mm256_or_ps(x, _mm256_set1_ps(-0.0f)));  // exp(-|x|)
  const __m256 s = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  return _mm256_blendv_ps(s, _mm256_mul_ps(e, s), x);
}

// tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|), for |x| >= 0.625; below,
// where 1 - e would cancel, the odd polynomial x + x^3 P(x^2) (max 0.7 ulp).
PYDL_TARGET_AVX2 inline __m256 tanh(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  const __m256 ax = _mm256_andnot_ps(sign, x);
  const __m256 e = exp(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
  const __m256 large = _mm256_or_ps(_mm256_and_ps(sign, x),
                                    _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e)));
  const __m256 x2 = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(0.0021489840000867844f);
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-0.008184662088751793f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(0.021703999489545822f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-0.05394745245575905f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(0.13333211839199066f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-0.3333333134651184f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(x, x2), p, x);
  return _mm256_blendv_ps(large, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}


// max over a row; NaN may be dropped here, but it reaches the row's sum of exp.
PYDL_TARGET_AVX2 inline float row_max(const float* x, index_t n) {
  __m256 m = _mm256_set1_ps(-INFINITY);
  index_t i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
  if (i < n) {
    const __m256i k = tail_mask(n - i);
    m = _mm256_max_ps(m, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(x + i, k),
                                          _mm256_castsi256_ps(k)));
  }
  return hmax(m);
}

// sum exp(x - m), accumulated in double; writes each exp(x - m) to e unless
// null. `next` (or null) is the row to be processed next: it is prefetched
// into L1 meanwhile, since the hardware prefetcher stops at page boundaries
// and a row is about a page.
PYDL_TARGET_AVX2 inline double row_sum_exp(float* e, const float* x, float m, index_t n,
                                           const float* next) {
  const __m256 vm = _mm256_set1_ps(m);
  WideSum sum;
  __m256 part = _mm256_setzero_ps();  // float lanes over 8 vectors at a time, then into double:
  int terms = 0;                      // each lane adds at most 8 values in [0, 1] in float
  index_t i = 0;
  for (; i + 8 <= n; i += 8) {
    if (next) _mm_prefetch(reinterpret_cast<const char*>(next + i), _MM_HINT_T0);
    const __m256 v = exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    if (e) _mm256_storeu_ps(e + i, v);
    part = _mm256_add_ps(part, v);
    if (++terms == 8) {
      sum.add(part);
      part = _mm256_setzero_ps();
      terms = 0;
    }
  }
  if (i < n) {
    const __m256i k = tail_mask(n - i);
    const __m256 v = _mm256_and_ps(exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), vm)),
                                   _mm256_castsi256_ps(k));
    if (e) _mm256_maskstore_ps(e + i, k, v);
    part = _mm256_add_ps(part, v);
  }
  sum.add(part);
  return sum.total();
}

}  // namespace pydl::simd

#endif  // PYDL_X86

namespace pydl {

// The row reductions on the best path the CPU allows (portable: libm, double sums).
inline float row_max(const float* x, index_t n) {
#if PYDL_X86
  if (use_avx2()) return simd::row_max(x, n);
#endif
  float m = -INFINITY;
  for (index_t i = 0; i < n; ++i) m = std::fmax(m, x[i]);
  return m;
}

inline double row_sum_exp(float* e, const float* x, float m, index_t n,
                          [[maybe_unused]] const float* next = nullptr) {
#if PYDL_X86
  if (use_avx2()) return simd::row_sum_exp(e, x, m, n, next);
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
