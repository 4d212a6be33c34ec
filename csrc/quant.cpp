// int8 GEMM, Linear and convolution (quant.h): u8 x s8 -> int32 on the loop
// nest of dot_gemm.h, then a float32 epilogue.
//
// Micro-kernels. A: weight rows, one broadcast 32-bit word = 4 s8 of a k
// group; B: 16-column activation panels, one 64-byte vector = 16 columns x 4
// u8 of a k group.
//   avx512_vnni  6 rows x 4 panels: vpdpbusd adds the four u8*s8 products of
//                each 32-bit lane to an int32 accumulator, exactly.
//   avx2         2 rows x 1 panel: vpmovzxbw / vpmovsxbw widen u8 and s8 to
//                16 bits, vpmaddwd sums each pair into int32 (|pair| <=
//                2*255*128). vpmaddubsw is not used: it sums the u8*s8 pairs
//                into int16 and saturates (2*255*127 > 32767).
//   portable     4 rows x 1 panel, integer loops.
#include "quant.h"

#include <algorithm>
#include <cstring>

#include "dot_gemm.h"
#include "dot_insn.h"
#include "parallel.h"

#if PYDL_X86
#include <immintrin.h>
#endif

namespace pydl {

namespace {

// Below this many multiply-adds per thread a second thread costs more than it saves.
constexpr double kMacsPerThread = 2e6;
// Columns (pixels) of one convolution chunk: its col matrix, panels and int32
// products take about (K + K + 4 C_out) bytes per column; 4 MiB of them stay in L3.
constexpr index_t kConvChunkBytes = index_t(4) << 20;

// ---- which kernel --------------------------------------------------------------

// The ladder of common.h: VNNI where the active path includes AVX-512 and the
// CPU has it, then AVX2, then portable.
enum class Int8Path { portable, avx2, avx512_vnni };

Int8Path int8_path() {
  if (has_avx512_vnni()) return Int8Path::avx512_vnni;
  return use_avx2() ? Int8Path::avx2 : Int8Path::portable;
}

// ---- micro-kernels ---------------------------------------------------------------

// c[m x cols] (=, or += when accumulate) tile[m x cols].
void store_tile(std::int32_t* c, index_t ldc, const std::int32_t* tile, index_t ldt, index_t m,
                index_t cols, bool accumulate) {
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < cols; ++j)
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + tile[i * ldt + j] : tile[i * ldt + j];
}

// sum over the 4 bytes t of s8(w.byte t) * u8(x.byte t).
inline std::int32_t dot4(std::uint32_t w, std::uint32_t x) {
  std::int32_t sum = 0;
  for (int t = 0; t < 4; ++t)
    sum += std::int32_t(std::int8_t(w >> (8 * t))) * std::int32_t(std::uint8_t(x >> (8 * t)));
  return sum;
}

void int8_kernel_portable(index_t kg, const std::uint32_t* a, index_t lda, index_t m,
                          const std::uint32_t* b, index_t, index_t, std::int32_t* c, index_t ldc,
                          index_t cols, bool accumulate) {
  constexpr index_t MR = 4;
  std::int32_t acc[MR][16] = {};
  for (index_t i = 0; i < m; ++i)
    for (index_t g = 0; g < kg; ++g) {
      const std::uint32_t w = a[i * lda + g];
      for (index_t j = 0; j < 16; ++j) acc[i][j] += dot4(w, b[g * 16 + j]);
    }
  store_tile(c, ldc, &acc[0][0], 16, m, cols, accumulate);
}

#if PYDL_X86
// Each accumulator acc[q] holds, per column 4q + i, two int32 lanes: the sums
// over k = 0, 1 and over k = 2, 3 of each group. The pair sums are added at
// the end: hadd gives (c0 c1 c4 c5 | c2 c3 c6 c7), the permute restores order.
PYDL_TARGET_AVX2 void int8_kernel_avx2(index_t kg, const std::uint32_t* a, index_t lda,
                                       index_t m, const std::uint32_t* b, index_t, index_t,
                                       std::int32_t* c, index_t ldc, index_t cols,
                                       bool accumulate) {
  const std::uint32_t* r0 = a;
  const std::uint32_t* r1 = a + (m > 1 ? lda : 0);
  __m256i acc0[4], acc1[4];
  for (int q = 0; q < 4; ++q) acc0[q] = acc1[q] = _mm256_setzero_si256();
  for (index_t g = 0; g < kg; ++g) {
    const __m128i* bg = reinterpret_cast<const __m128i*>(b + g * 16);
    const __m256i w0 = _mm256_cvtepi8_epi16(_mm_set1_epi32(static_cast<int>(r0[g])));
    const __m256i w1 = _mm256_cvtepi8_epi16(_mm_set1_epi32(static_cast<int>(r1[g])));
    for (int q = 0; q < 4; ++q) {
      const __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128(bg + q));  // 4 columns x 4 k
      acc0[q] = _mm256_add_epi32(acc0[q], _mm256_madd_epi16(w0, x));
      acc1[q] = _mm256_add_epi32(acc1[q], _mm256_madd_epi16(w1, x));
    }
  }
  alignas(32) std::int32_t tile[2][16];
  auto finish_row = [](std::int32_t* out, const __m256i* acc) PYDL_TARGET_AVX2 {
    const __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[0], acc[1]), 0xD8);
    const __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[2], acc[3]), 0xD8);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), lo);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + 8), hi);
  };
  finish_row(tile[0], acc0);
  finish_row(tile[1], acc1);
  store_tile(c, ldc, &tile[0][0], 16, m, cols, accumulate);
}

template <int NB>
PYDL_TARGET_AVX512_VNNI void int8_tile_vnni(index_t kg, const std::uint32_t* a, index_t lda,
                                            index_t m, const std::uint32_t* b,
                                            index_t panel_stride, std::int32_t* c, index_t ldc,
                                            index_t cols, bool accumulate) {
  constexpr int MR = 6;
  const std::uint32_t* row[MR];
  for (int i = 0; i < MR; ++i) row[i] = a + std::min<index_t>(i, m - 1) * lda;
  __m512i acc[MR][NB];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_si512();
  for (index_t g = 0; g < kg; ++g) {
    __m512i x[NB];
    for (int j = 0; j < NB; ++j) x[j] = _mm512_loadu_si512(b + j * panel_stride + g * 16);
    for (int i = 0; i < MR; ++i) {
      const __m512i w = _mm512_set1_epi32(static_cast<int>(row[i][g]));
      for (int j = 0; j < NB; ++j) acc[i][j] = dpbusd(acc[i][j], x[j], w);
    }
  }
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    for (int j = 0; j < NB; ++j) {
      const index_t n = cols - 16 * j;
      if (n <= 0) break;
      const __mmask16 mask = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
      std::int32_t* cp = c + i * ldc + 16 * j;
      __m512i v = acc[i][j];
      if (accumulate) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mask, cp));
      _mm512_mask_storeu_epi32(cp, mask, v);
    }
  }
}

PYDL_TARGET_AVX512_VNNI void int8_kernel_vnni(index_t kg, const std::uint32_t* a, index_t lda,
                                              index_t m, const std::uint32_t* b, index_t panels,
                                              index_t panel_stride, std::int32_t* c, index_t ldc,
                                              index_t cols, bool accumulate) {
  switch (panels) {
    case 4: return int8_tile_vnni<4>(kg, a, lda, m, b, panel_stride, c, ldc, cols, accumulate);
    case 3: return int8_tile_vnni<3>(kg, a, lda, m, b, panel_stride, c, ldc, cols, accumulate);
    case 2: return int8_tile_vnni<2>(kg, a, lda, m, b, panel_stride, c, ldc, cols, accumulate);
    default: return int8_tile_vnni<1>(kg, a, lda, m, b, panel_stride, c, ldc, cols, accumulate);
  }
}
#endif

const DotKernelInfo<std::int32_t>& int8_kernel() {
  static const DotKernelInfo<std::int32_t> portable{int8_kernel_portable, 4, 1};
#if PYDL_X86
  static const DotKernelInfo<std::int32_t> avx2{int8_kernel_avx2, 2, 1};
  static const DotKernelInfo<std::int32_t> vnni{int8_kernel_vnni, 6, 4};
  switch (int8_path()) {
    case Int8Path::avx512_vnni: return vnni;
    case Int8Path::avx2: return avx2;
    case Int8Path::portable: break;
  }
#endif
  return portable;
}

// ---- activation panels ------------------------------------------------------------
// panels[(p * kg + g) * 16 + j] = column 16p + j's k group g (zero past K and
// past the last column).

// q = clamp(round_half_even(x * inv_scale) + zero, 0, 255), the portable form
// (and the AVX2 path's tail). Rounding adds and subtracts 1.5 * 2^23 (exact for
// |v| < 2^22, which the clamp before ensures), so no rounding-mode call is
// needed; NaN fails both comparisons and becomes 0.
inline std::uint8_t quantize_one(float x, float inv_scale, float zero) {
  float v = x * inv_scale;
  v = v > -512.0f ? v : -512.0f;
  v = v < 512.0f ? v : 512.0f;
  v = (v + 12582912.0f) - 12582912.0f + zero;
  v = v > 0.0f ? v : 0.0f;
  v = v < 255.0f ? v : 255.0f;
  return static_cast<std::uint8_t>(static_cast<int>(v));
}

// Panels from u8 rows that hold k contiguously (rows of ld bytes): each word
// is 4 consecutive bytes of one row, a plain 32-bit copy but for the k tail.
void pack_rows(std::uint32_t* panels, const std::uint8_t* x, index_t ld, index_t N, index_t K) {
  const index_t kg = int8_groups(K), whole = K / 4, count = ceil_div(N, 16);
  parallel_for(count, threads_for(double(N) * K, kCopyGrain), 1, [&](index_t p0, index_t p1) {
    for (index_t p = p0; p < p1; ++p)
      for (index_t j = 0; j < 16; ++j) {
        const index_t n = 16 * p + j;
        std::uint32_t* dst = panels + p * kg * 16 + j;
        if (n >= N) {
          for (index_t g = 0; g < kg; ++g) dst[g * 16] = 0;
          continue;
        }
        const std::uint8_t* src = x + n * ld;
        for (index_t g = 0; g < whole; ++g) std::memcpy(dst + g * 16, src + 4 * g, 4);
        if (whole < kg) {
          std::uint8_t tail[4] = {0, 0, 0, 0};
          std::memcpy(tail, src + 4 * whole, K - 4 * whole);
          std::memcpy(dst + whole * 16, tail, 4);
        }
      }
  });
}

#if PYDL_X86
// quantize_one, 8 at a time: vroundps rounds half to even as quantize_one does,
// and maxps returns its second operand (0) for NaN. Returns the elements done.
PYDL_TARGET_AVX2 index_t quantize_avx2(std::uint8_t* q, const float* x, index_t K,
                                       float inv_scale, float zero) {
  const __m256 inv = _mm256_set1_ps(inv_scale), z = _mm256_set1_ps(zero);
  const __m256 lo = _mm256_setzero_ps(), hi = _mm256_set1_ps(255.0f);
  index_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + k), inv);
    v = _mm256_add_ps(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z);
    const __m256i i = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + k), _mm_packus_epi16(w, w));
  }
  return k;
}
#endif

// q (rows x K, row stride ld) = quantize_one of x (rows x K, contiguous).
void quantize_rows(std::uint8_t* q, index_t ld, const float* x, index_t rows, index_t K,
                   float inv_scale, float zero) {
  parallel_for(rows, threads_for(double(rows) * K, kCopyGrain), 1, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      index_t k = 0;
#if PYDL_X86
      if (use_avx2()) k = quantize_avx2(q + r * ld, x + r * K, K, inv_scale, zero);
#endif
      for (; k < K; ++k) q[r * ld + k] = quantize_one(x[r * K + k], inv_scale, zero);
    }
  });
}

// Panels from a col matrix (K rows of `cols` bytes, row stride ld): the bytes
// of 4 rows x 16 columns interleaved (byte t of column j's word is row 4g + t).
// Whole blocks with SSE2 unpacks (x86-64's baseline), edges one byte at a time.
void pack_col(std::uint32_t* panels, const std::uint8_t* col, index_t ld, index_t K,
              index_t cols) {
  const index_t kg = int8_groups(K), count = ceil_div(cols, 16);
  parallel_for(count, threads_for(double(cols) * K, kCopyGrain), 1, [&](index_t p0, index_t p1) {
    for (index_t p = p0; p < p1; ++p)
      for (index_t g = 0; g < kg; ++g) {
        std::uint32_t* dst = panels + (p * kg + g) * 16;
        const std::uint8_t* src = col + 4 * g * ld + 16 * p;
#if PYDL_X86
        if (16 * p + 16 <= cols && 4 * g + 4 <= K) {
          auto row = [&](int t) {
            return _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + t * ld));
          };
          const __m128i r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3);
          const __m128i lo01 = _mm_unpacklo_epi8(r0, r1), hi01 = _mm_unpackhi_epi8(r0, r1);
          const __m128i lo23 = _mm_unpacklo_epi8(r2, r3), hi23 = _mm_unpackhi_epi8(r2, r3);
          __m128i* out = reinterpret_cast<__m128i*>(dst);
          _mm_storeu_si128(out + 0, _mm_unpacklo_epi16(lo01, lo23));
          _mm_storeu_si128(out + 1, _mm_unpackhi_epi16(lo01, lo23));
          _mm_storeu_si128(out + 2, _mm_unpacklo_epi16(hi01, hi23));
          _mm_storeu_si128(out + 3, _mm_unpackhi_epi16(hi01, hi23));
          continue;
        }
#endif
        for (index_t j = 0; j < 16; ++j) {
          std::uint8_t q[4] = {0, 0, 0, 0};
          if (16 * p + j < cols)
            for (index_t t = 0; t < 4 && 4 * g + t < K; ++t) q[t] = src[t * ld + j];
          std::memcpy(dst + j, q, 4);
        }
      }
  });
}

// ---- the float epilogue -------------------------------------------------------------

// Per output channel n: y = float(c - a_zero * colsum[n]) * (a_scale * w_scale[n]) + bias[n].
// The subtraction is exact in 32-bit wrap-around arithmetic: its true value,
// sum_k (qa - a_zero) qw, fits in int32.
struct Requantize {
  Requantize(const Int8Output& o, index_t N) : scale(N), zero_sum(N), bias(N) {
    for (index_t n = 0; n < N; ++n) {
      scale.get()[n] = o.a_scale * o.w_scale[n];
      zero_sum.get()[n] = std::int32_t(std::uint32_t(o.a_zero) * std::uint32_t(o.colsum[n]));
      bias.get()[n] = o.bias ? o.bias[n] : 0.0f;
    }
  }
  // dst[r] = the value of src[r] for channels n0 + r * dn, r < count. Locals and
  // __restrict let the compiler vectorize (dst could otherwise alias the constants).
  void apply(float* __restrict dst, const std::int32_t* __restrict src, index_t count,
             index_t n0, index_t dn) const {
    const std::int32_t* __restrict zs = zero_sum.get() + n0;
    const float* __restrict sc = scale.get() + n0;
    const float* __restrict bi = bias.get() + n0;
    for (index_t r = 0; r < count; ++r) {
      const std::int32_t v = std::int32_t(std::uint32_t(src[r]) - std::uint32_t(zs[r * dn]));
      dst[r] = float(v) * sc[r * dn] + bi[r * dn];
    }
  }
  Workspace<float> scale;
  Workspace<std::int32_t> zero_sum;
  Workspace<float> bias;
};

int gemm_threads(index_t M, index_t N, index_t K) {
  return threads_for(double(M) * N * K, kMacsPerThread);
}

}  // namespace

index_t int8_groups(index_t K) { return ceil_div(K, 4); }

void int8_pack_weights(std::uint32_t* rows, std::int32_t* colsum, const std::int8_t* qw,
                       index_t N, index_t K) {
  require(K <= kInt8MaxK, "int8: K = " + std::to_string(K) + " is above " +
                              std::to_string(kInt8MaxK) + ", where int32 sums could overflow");
  const index_t kg = int8_groups(K);
  for (index_t n = 0; n < N; ++n) {
    std::uint8_t* dst = reinterpret_cast<std::uint8_t*>(rows + n * kg);
    std::memset(dst, 0, 4 * kg);
    std::memcpy(dst, qw + n * K, K);
    std::int32_t sum = 0;
    for (index_t k = 0; k < K; ++k) sum += qw[n * K + k];
    colsum[n] = sum;
  }
}

void int8_gemm(std::int32_t* c, const std::uint32_t* w_rows, const std::uint8_t* x, index_t M,
               index_t N, index_t K) {
  require(K <= kInt8MaxK, "int8_gemm: K = " + std::to_string(K) + " is above " +
                              std::to_string(kInt8MaxK));
  const index_t kg = int8_groups(K);
  Workspace<std::uint32_t> panels(std::max<index_t>(1, ceil_div(N, 16) * kg * 16));
  pack_rows(panels.get(), x, K, N, K);
  dot_gemm(int8_kernel(), M, N, kg, w_rows, kg, panels.get(), c, N, false,
           gemm_threads(M, N, K), [](index_t, index_t, index_t, index_t) {});
}

void int8_linear(float* y, const float* x, const std::uint32_t* w_rows, index_t M, index_t N,
                 index_t K, const Int8Output& o) {
  require(K <= kInt8MaxK, "int8_linear: in_features = " + std::to_string(K) + " is above " +
                              std::to_string(kInt8MaxK));
  if (M == 0 || N == 0) return;
  const index_t kg = int8_groups(K);
  Workspace<std::uint8_t> qx(std::max<index_t>(1, M * K));
  quantize_rows(qx.get(), K, x, M, K, 1.0f / o.a_scale, float(o.a_zero));
  Workspace<std::uint32_t> panels(std::max<index_t>(1, ceil_div(M, 16) * kg * 16));
  pack_rows(panels.get(), qx.get(), K, M, K);
  // C (N out channels x M batch rows); the epilogue writes y (M x N) = C^T in
  // 16 x 16 blocks, so both the reads of C and the writes of y run along rows.
  Workspace<std::int32_t> c(std::size_t(N) * M);
  const Requantize requantize(o, N);
  dot_gemm(int8_kernel(), N, M, kg, w_rows, kg, panels.get(), c.get(), M, false,
           gemm_threads(M, N, K), [&](index_t n0, index_t n1, index_t m0, index_t m1) {
             std::int32_t block[16][16];
             for (index_t nb = n0; nb < n1; nb += 16)
               for (index_t mb = m0; mb < m1; mb += 16) {
                 const index_t nn = std::min<index_t>(16, n1 - nb);
                 const index_t mm = std::min<index_t>(16, m1 - mb);
                 for (index_t i = 0; i < nn; ++i)
                   for (index_t j = 0; j < mm; ++j) block[j][i] = c.get()[(nb + i) * M + mb + j];
                 for (index_t j = 0; j < mm; ++j)
                   requantize.apply(y + (mb + j) * N + nb, block[j], nn, nb, 1);
               }
           });
}

void int8_conv2d(float* y, const float* x, const std::uint32_t* w_rows, const Conv2dShape& s,
                 const Int8Output& o) {
  check_conv2d(s);
  require(s.groups == 1, "int8_conv2d: groups must be 1, got " + std::to_string(s.groups));
  const index_t K = s.C_in * s.KH * s.KW, kg = int8_groups(K);
  require(K <= kInt8MaxK, "int8_conv2d: C_in * KH * KW = " + std::to_string(K) + " is above " +
                              std::to_string(kInt8MaxK));
  const index_t P = s.H_out() * s.W_out(), HW = s.H * s.W, plane_in = s.C_in * HW;
  if (s.N == 0 || s.C_out == 0 || P == 0) return;

  // The whole input, quantized once (each tap is then one byte).
  Workspace<std::uint8_t> qx(std::max<index_t>(1, s.N * plane_in));
  quantize_rows(qx.get(), plane_in, x, s.N, plane_in, 1.0f / o.a_scale, float(o.a_zero));

  const index_t images =
      std::clamp<index_t>(kConvChunkBytes / std::max<index_t>(1, (2 * K + 4 * s.C_out) * P), 1,
                          s.N);
  const index_t max_cols = images * P;
  Workspace<std::uint8_t> col(std::max<index_t>(1, K * max_cols));
  Workspace<std::uint32_t> panels(ceil_div(max_cols, 16) * kg * 16);
  Workspace<std::int32_t> c(std::size_t(s.C_out) * max_cols);
  const Requantize requantize(o, s.C_out);
  const std::uint8_t pad = static_cast<std::uint8_t>(o.a_zero);
  for (index_t n0 = 0; n0 < s.N; n0 += images) {
    const index_t n1 = std::min(s.N, n0 + images), cols = (n1 - n0) * P;
    parallel_for(n1 - n0, threads_for(double(n1 - n0) * K * P, kCopyGrain), 1,
                 [&](index_t i0, index_t i1) {
                   for (index_t i = i0; i < i1; ++i)
                     im2col_rows<std::uint8_t>(col.get() + i * P, cols,
                                               qx.get() + (n0 + i) * plane_in, s, 0, s.H_out(),
                                               pad);
                 });
    pack_col(panels.get(), col.get(), cols, K, cols);
    // C (C_out x cols); column j is pixel j % P of image n0 + j / P.
    dot_gemm(int8_kernel(), s.C_out, cols, kg, w_rows, kg, panels.get(), c.get(), cols, false,
             gemm_threads(s.C_out, cols, K), [&](index_t o0, index_t o1, index_t j0, index_t j1) {
               for (index_t co = o0; co < o1; ++co)
                 for (index_t j = j0; j < j1;) {
                   const index_t image = j / P, pixel = j % P;
                   const index_t run = std::min(j1 - j, P - pixel);
                   float* dst = y + ((n0 + image) * s.C_out + co) * P + pixel;
                   const std::int32_t* src = c.get() + co * cols + j;
                   requantize.apply(dst, src, run, co, 0);
                   j += run;
                 }
             });
  }
}

const char* int8_kernel_name() {
  switch (int8_path()) {
    case Int8Path::avx512_vnni: return "avx512_vnni";
    case Int8Path::avx2: return "avx2";
    case Int8Path::portable: break;
  }
  return "portable";
}

}  // namespace pydl
