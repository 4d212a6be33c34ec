#include "dropout.h"

#include "parallel.h"
#include "philox.h"

#if PYDL_X86
#include <immintrin.h>
#endif

namespace pydl {

namespace {

// Threads split [0, n) at multiples of 64: whole Philox blocks (4 elements) and
// whole cache lines of the uint8 mask.
constexpr index_t kAlign = 64;

int dropout_threads(index_t n) { return threads_for(static_cast<double>(n), 1 << 15); }

// The scale kept elements get: 1/(1-p), or 0 when everything is dropped.
float keep_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

// Writes the mask for [begin, end) (begin a multiple of 4) and calls
// apply(i, keep) on each element.
template <class Apply>
void mask_range(std::uint8_t* mask, index_t begin, index_t end, float p, std::uint64_t seed,
                std::uint64_t offset, const Apply& apply) {
  for (index_t base = begin; base < end; base += 4) {
    const Philox4x32 bits = philox_block(seed, offset, static_cast<std::uint64_t>(base / 4));
    const index_t count = end - base < 4 ? end - base : 4;
    for (index_t lane = 0; lane < count; ++lane) {
      const bool keep = uniform_from_bits(bits.v[lane]) >= p;
      mask[base + lane] = keep;
      apply(base + lane, keep);
    }
  }
}

#if PYDL_X86
// The same Philox blocks 16 at a time on AVX-512: lane b of c[w] is word w of
// block b's counter, and the round's 32x32 -> 64-bit products come from
// vpmuludq on the even and the odd lanes. The four words of 16 blocks are
// then transposed into element order (element 4 block + word), so each of
// the 4 output vectors holds 16 consecutive elements. The last, partial run
// of 64 elements computes all 16 blocks and stores through masks.
PYDL_TARGET_AVX512 inline __m512i mulhi_epu32(__m512i a, __m512i m) {
  const __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(a, m), 32);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  return _mm512_mask_blend_epi32(0xAAAA, even, odd);
}

// out[q] = elements 16 q .. 16 q + 15 of the 16 blocks whose words are v[0..3].
PYDL_TARGET_AVX512 inline void philox16(std::uint64_t seed, std::uint64_t offset,
                                        std::uint64_t block, __m512i out[4]) {
  const __m512i lo = _mm512_set1_epi32(static_cast<int>(block));
  __m512i c0 = _mm512_add_epi32(lo, _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                                      13, 14, 15));
  __m512i c1 = _mm512_set1_epi32(static_cast<int>(block >> 32));
  c1 = _mm512_mask_add_epi32(c1, _mm512_cmplt_epu32_mask(c0, lo), c1, _mm512_set1_epi32(1));
  __m512i c2 = _mm512_set1_epi32(static_cast<int>(offset));
  __m512i c3 = _mm512_set1_epi32(static_cast<int>(offset >> 32));
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  std::uint32_t k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    if (round) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const __m512i hi1 = mulhi_epu32(c2, m1), lo1 = _mm512_mullo_epi32(c2, m1);
    const __m512i hi0 = mulhi_epu32(c0, m0), lo0 = _mm512_mullo_epi32(c0, m0);
    c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int>(k0)));
    c1 = lo1;
    c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int>(k1)));
    c3 = lo0;
  }
  // 4 x 4 transposes within each 128-bit lane (u[k] lane j = block 4 j + k),
  // then of the 128-bit lanes (out[q] = blocks 4 q .. 4 q + 3).
  const __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
  const __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
  const __m512i u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);
  const __m512i u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);
  const __m512i a = _mm512_shuffle_i32x4(u0, u1, 0x44), b = _mm512_shuffle_i32x4(u2, u3, 0x44);
  const __m512i c = _mm512_shuffle_i32x4(u0, u1, 0xEE), d = _mm512_shuffle_i32x4(u2, u3, 0xEE);
  out[0] = _mm512_shuffle_i32x4(a, b, 0x88);
  out[1] = _mm512_shuffle_i32x4(a, b, 0xDD);
  out[2] = _mm512_shuffle_i32x4(c, d, 0x88);
  out[3] = _mm512_shuffle_i32x4(c, d, 0xDD);
}

// mask_range on AVX-512, for begin a multiple of 64; y = x * scale where kept
// (x null: the mask only).
PYDL_TARGET_AVX512 void mask_range_avx512(std::uint8_t* mask, float* y, const float* x,
                                          float scale, index_t begin, index_t end, float p,
                                          std::uint64_t seed, std::uint64_t offset) {
  const __m512 vp = _mm512_set1_ps(p), vscale = _mm512_set1_ps(scale);
  const __m512 unit = _mm512_set1_ps(1.0f / 16777216.0f);
  const __m128i one = _mm_set1_epi8(1);
  for (index_t base = begin; base < end; base += 64) {
    __m512i bits[4];
    philox16(seed, offset, static_cast<std::uint64_t>(base / 4), bits);
    for (int q = 0; q < 4; ++q) {
      const index_t first = base + 16 * q;
      if (first >= end) break;
      const __mmask16 lanes = _cvtu32_mask16(
          end - first >= 16 ? 0xffffu : (1u << static_cast<unsigned>(end - first)) - 1);
      // uniform = (bits >> 8) / 2^24 exactly, as uniform_from_bits.
      const __m512 uniform = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(bits[q], 8)), unit);
      const __mmask16 keep = _mm512_cmp_ps_mask(uniform, vp, _CMP_GE_OQ);
      _mm_mask_storeu_epi8(mask + first, lanes, _mm_maskz_mov_epi8(keep, one));
      if (x) {
        const __m512 xv = _mm512_maskz_loadu_ps(lanes, x + first);
        _mm512_mask_storeu_ps(y + first, lanes, _mm512_maskz_mul_ps(keep, xv, vscale));
      }
    }
  }
}
#endif

}  // namespace

void dropout_mask(std::uint8_t* mask, index_t n, float p, std::uint64_t seed,
                  std::uint64_t offset) {
  parallel_for(n, dropout_threads(n), kAlign, [&](index_t begin, index_t end) {
#if PYDL_X86
    if (use_avx512())
      return mask_range_avx512(mask, nullptr, nullptr, 0.0f, begin, end, p, seed, offset);
#endif
    mask_range(mask, begin, end, p, seed, offset, [](index_t, bool) {});
  });
}

void dropout_forward(float* y, std::uint8_t* mask, const float* x, index_t n, float p,
                     std::uint64_t seed, std::uint64_t offset) {
  const float scale = keep_scale(p);
  parallel_for(n, dropout_threads(n), kAlign, [&](index_t begin, index_t end) {
#if PYDL_X86
    if (use_avx512()) return mask_range_avx512(mask, y, x, scale, begin, end, p, seed, offset);
#endif
    mask_range(mask, begin, end, p, seed, offset,
               [&](index_t i, bool keep) { y[i] = keep ? x[i] * scale : 0.0f; });
  });
}

void dropout_backward(float* dx, const float* dy, const std::uint8_t* mask, index_t n, float p) {
  const float scale = keep_scale(p);
  parallel_for(n, dropout_threads(n), kAlign, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
  });
}

}  // namespace pydl
