// Vector lanes as value types, for kernels written once over the vector width:
// Ymm (8 floats, AVX2+FMA) and Zmm (16 floats, AVX-512). A kernel body is a
// template over W (no target attribute of its own); each ISA's entry point is
// a PYDL_TARGET_* function marked flatten that instantiates it with its W, so
// every lane operation is inlined into code compiled for that ISA only. The
// flatten is needed, not only tidy: a call passing F16 by value that GCC 12
// left out of line under LTO lost all but the low 4 lanes (an LSTM gate).
//
// W::V         the vector: F8 or F16, with + - * / and unary minus
// W::width     floats per vector
// W::load(p), W::store(p, v)                 full vectors
// W::tail(k), W::load(p, m), W::store(p, m, v) the first k < width lanes
//                                            (a mask register on Zmm)
// W::stream(p, v)                            a store past the cache (p aligned)
// W::fmadd(a, b, c) = a * b + c fused; W::sqrt(a); W::max(a, b) = a < b ? b : a
// W::deinterleave(a, b, even, odd)           the even and the odd lanes of the
//                                            2*width floats a then b
// W::greater_or_nan(a, b)                    a Cond: a > b, or a is NaN
// W::store_int64(p, a)                       a's lanes, whole numbers below 2**31,
//                                            as int64 at p
#pragma once
#include "common.h"

#if PYDL_X86
#include <immintrin.h>

#define PYDL_FLATTEN __attribute__((flatten))

namespace pydl::simd {

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

struct F16 {
  __m512 v;
  PYDL_TARGET_AVX512 F16() : v(_mm512_setzero_ps()) {}
  PYDL_TARGET_AVX512 F16(float x) : v(_mm512_set1_ps(x)) {}  // NOLINT: broadcasts a constant
  PYDL_TARGET_AVX512 explicit F16(__m512 x) : v(x) {}
};
PYDL_TARGET_AVX512 inline F16 operator+(F16 a, F16 b) { return F16(_mm512_add_ps(a.v, b.v)); }
PYDL_TARGET_AVX512 inline F16 operator-(F16 a, F16 b) { return F16(_mm512_sub_ps(a.v, b.v)); }
PYDL_TARGET_AVX512 inline F16 operator*(F16 a, F16 b) { return F16(_mm512_mul_ps(a.v, b.v)); }
PYDL_TARGET_AVX512 inline F16 operator/(F16 a, F16 b) { return F16(_mm512_div_ps(a.v, b.v)); }
PYDL_TARGET_AVX512 inline F16 operator-(F16 a) {
  return F16(_mm512_castsi512_ps(
      _mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(int(0x80000000u)))));
}

struct Ymm {
  using V = F8;
  struct Mask {
    __m256i m;
  };
  static constexpr index_t width = 8;
  // Lanes 0..k-1 on, k in [0, 8].
  PYDL_TARGET_AVX2 static Mask tail(index_t k) {
    return {_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(k)),
                               _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))};
  }
  PYDL_TARGET_AVX2 static V load(const float* p) { return V(_mm256_loadu_ps(p)); }
  PYDL_TARGET_AVX2 static void store(float* p, V a) { _mm256_storeu_ps(p, a.v); }
  PYDL_TARGET_AVX2 static V load(const float* p, Mask k) { return V(_mm256_maskload_ps(p, k.m)); }
  PYDL_TARGET_AVX2 static void store(float* p, Mask k, V a) { _mm256_maskstore_ps(p, k.m, a.v); }
  // A store that bypasses the cache; p aligned to the vector (32 bytes).
  PYDL_TARGET_AVX2 static void stream(float* p, V a) { _mm256_stream_ps(p, a.v); }
  PYDL_TARGET_AVX2 static V fmadd(V a, V b, V c) { return V(_mm256_fmadd_ps(a.v, b.v, c.v)); }
  PYDL_TARGET_AVX2 static V sqrt(V a) { return V(_mm256_sqrt_ps(a.v)); }
  PYDL_TARGET_AVX2 static V max(V a, V b) { return V(_mm256_max_ps(b.v, a.v)); }
  // shuffle_ps picks the even (odd) lanes of a and b within each 128-bit half:
  // a0 a2 b0 b2 | a4 a6 b4 b6; the 64-bit permute puts the halves' pairs in order.
  PYDL_TARGET_AVX2 static void deinterleave(V a, V b, V& even, V& odd) {
    even = V(_mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(a.v, b.v, 0x88)), 0xD8)));
    odd = V(_mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(a.v, b.v, 0xDD)), 0xD8)));
  }
  PYDL_TARGET_AVX2 static void store_int64(std::int64_t* p, V a) {
    const __m256i whole = _mm256_cvttps_epi32(a.v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm256_cvtepi32_epi64(_mm256_castsi256_si128(whole)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 4),
                        _mm256_cvtepi32_epi64(_mm256_extracti128_si256(whole, 1)));
  }

  // For simd_math.h. Cond: a lane predicate (all-ones lanes here, a mask
  // register on Zmm). vmax/vmin are the instructions as they are: the second
  // operand when either is NaN.
  struct Cond {
    __m256 m;
  };
  PYDL_TARGET_AVX2 static V fnmadd(V a, V b, V c) { return V(_mm256_fnmadd_ps(a.v, b.v, c.v)); }
  PYDL_TARGET_AVX2 static V fmsub(V a, V b, V c) { return V(_mm256_fmsub_ps(a.v, b.v, c.v)); }
  PYDL_TARGET_AVX2 static V vmax(V a, V b) { return V(_mm256_max_ps(a.v, b.v)); }
  PYDL_TARGET_AVX2 static V vmin(V a, V b) { return V(_mm256_min_ps(a.v, b.v)); }
  PYDL_TARGET_AVX2 static V abs(V a) { return V(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)); }
  PYDL_TARGET_AVX2 static V minus_abs(V a) { return V(_mm256_or_ps(a.v, _mm256_set1_ps(-0.0f))); }
  // |magnitude| with the sign of `sign` (magnitude has a clear sign bit).
  PYDL_TARGET_AVX2 static V with_sign_of(V sign, V magnitude) {
    return V(_mm256_or_ps(_mm256_and_ps(_mm256_set1_ps(-0.0f), sign.v), magnitude.v));
  }
  PYDL_TARGET_AVX2 static Cond less(V a, V b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
  PYDL_TARGET_AVX2 static Cond less_equal(V a, V b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
  PYDL_TARGET_AVX2 static Cond greater(V a, V b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
  // a > b, or either is NaN.
  PYDL_TARGET_AVX2 static Cond not_less_equal(V a, V b) {
    return {_mm256_cmp_ps(a.v, b.v, _CMP_NLE_UQ)};
  }
  PYDL_TARGET_AVX2 static Cond greater_or_nan(V a, V b) {
    return {_mm256_or_ps(_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ), _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q))};
  }
  PYDL_TARGET_AVX2 static Cond sign_set(V a) { return {a.v}; }  // blendv reads the sign bit
  PYDL_TARGET_AVX2 static bool any(Cond c) { return !_mm256_testz_ps(c.m, c.m); }
  PYDL_TARGET_AVX2 static V select(Cond c, V yes, V no) {
    return V(_mm256_blendv_ps(no.v, yes.v, c.m));
  }
  // 0 where c holds, a elsewhere / a where c holds, 0 elsewhere.
  PYDL_TARGET_AVX2 static V zero_where(Cond c, V a) { return V(_mm256_andnot_ps(c.m, a.v)); }
  PYDL_TARGET_AVX2 static V keep_where(Cond c, V a) { return V(_mm256_and_ps(c.m, a.v)); }
  PYDL_TARGET_AVX2 static V load_or(const float* p, Mask k, V fill) {
    return V(_mm256_blendv_ps(fill.v, _mm256_maskload_ps(p, k.m), _mm256_castsi256_ps(k.m)));
  }
  PYDL_TARGET_AVX2 static V keep_lanes(Mask k, V a) {
    return V(_mm256_and_ps(a.v, _mm256_castsi256_ps(k.m)));
  }
  // bits(a) + (bits(n) << 23): adds the low bits of n to a's exponent.
  PYDL_TARGET_AVX2 static V add_to_exponent(V a, V n) {
    return V(_mm256_castsi256_ps(_mm256_add_epi32(
        _mm256_castps_si256(a.v), _mm256_slli_epi32(_mm256_castps_si256(n.v), 23))));
  }
  // 2^(n/2) and 2^(n - n/2) for an integral n (floor halves, as an arithmetic shift).
  PYDL_TARGET_AVX2 static void pow2_halves(V n, V& s1, V& s2) {
    const __m256i ni = _mm256_cvtps_epi32(n.v);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    s1 = V(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23)));
    s2 = V(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23)));
  }
  PYDL_TARGET_AVX2 static float hmax(V a) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  // A sum of floats kept in double lanes; the low and high halves of each
  // vector go to separate accumulators so the adds do not wait on each other.
  struct WideSum {
    __m256d lo, hi;
    PYDL_TARGET_AVX2 WideSum() : lo(_mm256_setzero_pd()), hi(_mm256_setzero_pd()) {}
    PYDL_TARGET_AVX2 void add(V a) {
      lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(a.v)));
      hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(a.v, 1)));
    }
    PYDL_TARGET_AVX2 double total() const {
      const __m256d v = _mm256_add_pd(lo, hi);
      __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
      return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    }
  };
};

struct Zmm {
  using V = F16;
  using Mask = __mmask16;
  static constexpr index_t width = 16;
  PYDL_TARGET_AVX512 static Mask tail(index_t k) {
    return _cvtu32_mask16((1u << static_cast<unsigned>(k)) - 1);
  }
  PYDL_TARGET_AVX512 static V load(const float* p) { return V(_mm512_loadu_ps(p)); }
  PYDL_TARGET_AVX512 static void store(float* p, V a) { _mm512_storeu_ps(p, a.v); }
  PYDL_TARGET_AVX512 static V load(const float* p, Mask m) { return V(_mm512_maskz_loadu_ps(m, p)); }
  PYDL_TARGET_AVX512 static void store(float* p, Mask m, V a) { _mm512_mask_storeu_ps(p, m, a.v); }
  PYDL_TARGET_AVX512 static void stream(float* p, V a) { _mm512_stream_ps(p, a.v); }  // 64-byte aligned
  PYDL_TARGET_AVX512 static V fmadd(V a, V b, V c) { return V(_mm512_fmadd_ps(a.v, b.v, c.v)); }
  PYDL_TARGET_AVX512 static V sqrt(V a) { return V(_mm512_sqrt_ps(a.v)); }
  PYDL_TARGET_AVX512 static V max(V a, V b) { return V(_mm512_max_ps(b.v, a.v)); }
  PYDL_TARGET_AVX512 static void deinterleave(V a, V b, V& even, V& odd) {
    const __m512i even_at =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    even = V(_mm512_permutex2var_ps(a.v, even_at, b.v));
    odd = V(_mm512_permutex2var_ps(a.v, _mm512_add_epi32(even_at, _mm512_set1_epi32(1)), b.v));
  }
  PYDL_TARGET_AVX512 static void store_int64(std::int64_t* p, V a) {
    _mm512_storeu_si512(p, _mm512_cvttps_epi64(_mm512_castps512_ps256(a.v)));
    _mm512_storeu_si512(p + 8, _mm512_cvttps_epi64(_mm512_extractf32x8_ps(a.v, 1)));
  }

  using Cond = __mmask16;
  PYDL_TARGET_AVX512 static V fnmadd(V a, V b, V c) { return V(_mm512_fnmadd_ps(a.v, b.v, c.v)); }
  PYDL_TARGET_AVX512 static V fmsub(V a, V b, V c) { return V(_mm512_fmsub_ps(a.v, b.v, c.v)); }
  PYDL_TARGET_AVX512 static V vmax(V a, V b) { return V(_mm512_max_ps(a.v, b.v)); }
  PYDL_TARGET_AVX512 static V vmin(V a, V b) { return V(_mm512_min_ps(a.v, b.v)); }
  PYDL_TARGET_AVX512 static V abs(V a) { return V(_mm512_abs_ps(a.v)); }
  PYDL_TARGET_AVX512 static V minus_abs(V a) { return V(_mm512_or_ps(a.v, _mm512_set1_ps(-0.0f))); }
  PYDL_TARGET_AVX512 static V with_sign_of(V sign, V magnitude) {
    return V(_mm512_or_ps(_mm512_and_ps(_mm512_set1_ps(-0.0f), sign.v), magnitude.v));
  }
  PYDL_TARGET_AVX512 static Cond less(V a, V b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
  PYDL_TARGET_AVX512 static Cond less_equal(V a, V b) {
    return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ);
  }
  PYDL_TARGET_AVX512 static Cond greater(V a, V b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ); }
  PYDL_TARGET_AVX512 static Cond not_less_equal(V a, V b) {
    return _mm512_cmp_ps_mask(a.v, b.v, _CMP_NLE_UQ);
  }
  PYDL_TARGET_AVX512 static Cond greater_or_nan(V a, V b) {
    return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ) | _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q);
  }
  PYDL_TARGET_AVX512 static Cond sign_set(V a) {
    return _mm512_movepi32_mask(_mm512_castps_si512(a.v));
  }
  PYDL_TARGET_AVX512 static bool any(Cond c) { return c != 0; }
  PYDL_TARGET_AVX512 static V select(Cond c, V yes, V no) {
    return V(_mm512_mask_blend_ps(c, no.v, yes.v));
  }
  PYDL_TARGET_AVX512 static V zero_where(Cond c, V a) { return V(_mm512_maskz_mov_ps(~c, a.v)); }
  PYDL_TARGET_AVX512 static V keep_where(Cond c, V a) { return V(_mm512_maskz_mov_ps(c, a.v)); }
  PYDL_TARGET_AVX512 static V load_or(const float* p, Mask k, V fill) {
    return V(_mm512_mask_loadu_ps(fill.v, k, p));
  }
  PYDL_TARGET_AVX512 static V keep_lanes(Mask k, V a) { return V(_mm512_maskz_mov_ps(k, a.v)); }
  PYDL_TARGET_AVX512 static V add_to_exponent(V a, V n) {
    return V(_mm512_castsi512_ps(_mm512_add_epi32(
        _mm512_castps_si512(a.v), _mm512_slli_epi32(_mm512_castps_si512(n.v), 23))));
  }
  PYDL_TARGET_AVX512 static void pow2_halves(V n, V& s1, V& s2) {
    const __m512i ni = _mm512_cvtps_epi32(n.v);
    const __m512i n1 = _mm512_srai_epi32(ni, 1), n2 = _mm512_sub_epi32(ni, n1);
    const __m512i bias = _mm512_set1_epi32(127);
    s1 = V(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23)));
    s2 = V(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23)));
  }
  PYDL_TARGET_AVX512 static float hmax(V a) { return _mm512_reduce_max_ps(a.v); }
  struct WideSum {
    __m512d lo, hi;
    PYDL_TARGET_AVX512 WideSum() : lo(_mm512_setzero_pd()), hi(_mm512_setzero_pd()) {}
    PYDL_TARGET_AVX512 void add(V a) {
      lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(a.v)));
      hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(a.v, 1)));
    }
    PYDL_TARGET_AVX512 double total() const { return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi)); }
  };
};

}  // namespace pydl::simd

#endif  // PYDL_X86
