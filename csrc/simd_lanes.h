// Vector lanes as value types, for kernels written once over the vector width:
// Ymm (8 floats, AVX2+FMA) and Zmm (16 floats, AVX-512). A kernel body is a
// template over W (no target attribute of its own); each ISA's entry point is
// a PYDL_TARGET_* function marked flatten that instantiates it with its W, so
// every lane operation is inlined into code compiled for that ISA only.
//
// W::V         the vector: F8 or F16, with + - * / and unary minus
// W::width     floats per vector
// W::load(p), W::store(p, v)                 full vectors
// W::tail(k), W::load(p, m), W::store(p, m, v) the first k < width lanes
//                                            (a mask register on Zmm)
// W::fmadd(a, b, c) = a * b + c fused; W::sqrt(a); W::max(a, b) = a < b ? b : a
#pragma once
#include "common.h"

#if PYDL_X86
#include <immintrin.h>

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
  PYDL_TARGET_AVX2 static V fmadd(V a, V b, V c) { return V(_mm256_fmadd_ps(a.v, b.v, c.v)); }
  PYDL_TARGET_AVX2 static V sqrt(V a) { return V(_mm256_sqrt_ps(a.v)); }
  PYDL_TARGET_AVX2 static V max(V a, V b) { return V(_mm256_max_ps(b.v, a.v)); }
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
  PYDL_TARGET_AVX512 static V fmadd(V a, V b, V c) { return V(_mm512_fmadd_ps(a.v, b.v, c.v)); }
  PYDL_TARGET_AVX512 static V sqrt(V a) { return V(_mm512_sqrt_ps(a.v)); }
  PYDL_TARGET_AVX512 static V max(V a, V b) { return V(_mm512_max_ps(b.v, a.v)); }
};

}  // namespace pydl::simd

#endif  // PYDL_X86
