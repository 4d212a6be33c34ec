// bfloat16 GEMM (bf16.h).
//
// With AVX512_BF16: op(A) becomes rows of bf16 pairs (one 32-bit word per two
// k), op(B) 16-column panels of pairs, and the loop nest of dot_gemm.h runs a
// 6 x 64 micro-kernel of vdpbf16ps, which adds both products of each lane's
// pair to its float32 accumulator. Conversion and packing cost O(MK + KN)
// against the product's O(MNK).
// Without it the operands are rounded to bf16 in float32 copies and go
// through sgemm (AVX2/FMA or portable): the same products, exact in float32,
// accumulated in float32.
#include "bf16.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "dot_gemm.h"
#include "dot_insn.h"
#include "gemm.h"
#include "parallel.h"

#if PYDL_X86
#include <immintrin.h>
#endif

namespace pydl {

namespace {

constexpr double kFlopsPerThread = 2e6;
// Two bf16 in one word: the even k in the low half, the odd k in the high half.
inline std::uint32_t bf16_pair(float even, float odd) {
  return std::uint32_t(bf16_from_float(even)) | std::uint32_t(bf16_from_float(odd)) << 16;
}

#if PYDL_X86
template <int NB>
PYDL_TARGET_AVX512_BF16 void bf16_tile(index_t kg, const std::uint32_t* a, index_t lda, index_t m,
                                       const std::uint32_t* b, index_t panel_stride, float* c,
                                       index_t ldc, index_t cols, bool accumulate) {
  constexpr int MR = 6;
  const std::uint32_t* row[MR];
  for (int i = 0; i < MR; ++i) row[i] = a + std::min<index_t>(i, m - 1) * lda;
  __m512 acc[MR][NB];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_ps();
  for (index_t g = 0; g < kg; ++g) {
    __m512i x[NB];
    for (int j = 0; j < NB; ++j) x[j] = _mm512_loadu_si512(b + j * panel_stride + g * 16);
    for (int i = 0; i < MR; ++i) {
      const __m512i w = _mm512_set1_epi32(static_cast<int>(row[i][g]));
      for (int j = 0; j < NB; ++j) acc[i][j] = dpbf16(acc[i][j], w, x[j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    for (int j = 0; j < NB; ++j) {
      const index_t n = cols - 16 * j;
      if (n <= 0) break;
      const __mmask16 mask = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
      float* cp = c + i * ldc + 16 * j;
      __m512 v = acc[i][j];
      if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, cp));
      _mm512_mask_storeu_ps(cp, mask, v);
    }
  }
}

PYDL_TARGET_AVX512_BF16 void bf16_kernel(index_t kg, const std::uint32_t* a, index_t lda,
                                         index_t m, const std::uint32_t* b, index_t panels,
                                         index_t panel_stride, float* c, index_t ldc,
                                         index_t cols, bool accumulate) {
  switch (panels) {
    case 4: return bf16_tile<4>(kg, a, lda, m, b, panel_stride, c, ldc, cols, accumulate);
    case 3: return bf16_tile<3>(kg, a, lda, m, b, panel_stride, c, ldc, cols, accumulate);
    case 2: return bf16_tile<2>(kg, a, lda, m, b, panel_stride, c, ldc, cols, accumulate);
    default: return bf16_tile<1>(kg, a, lda, m, b, panel_stride, c, ldc, cols, accumulate);
  }
}

// op(X)(r, k) = x[r * rs + k * ks]: rows of pairs, dst[r * kg + g] =
// (X(r, 2g), X(r, 2g + 1)), zero past K.
void pair_rows(std::uint32_t* dst, const float* x, index_t rs, index_t ks, index_t rows,
               index_t K) {
  const index_t kg = ceil_div(K, 2);
  parallel_for(rows, threads_for(double(rows) * K, kCopyGrain), 1, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const float* src = x + r * rs;
      for (index_t g = 0; g < K / 2; ++g)
        dst[r * kg + g] = bf16_pair(src[2 * g * ks], src[(2 * g + 1) * ks]);
      if (K % 2) dst[r * kg + kg - 1] = bf16_pair(src[(K - 1) * ks], 0.0f);
    }
  });
}

// op(B)(k, j) = b[k * ks + j * cs] as 16-column panels of pairs (dot_gemm.h),
// zero past K and N. The inner loop runs along whichever axis is contiguous.
void pair_panels(std::uint32_t* dst, const float* b, index_t ks, index_t cs, index_t K,
                 index_t N) {
  const index_t kg = ceil_div(K, 2), count = ceil_div(N, 16);
  auto value = [&](index_t k, index_t j) { return k < K && j < N ? b[k * ks + j * cs] : 0.0f; };
  parallel_for(count, threads_for(double(N) * K, kCopyGrain), 1, [&](index_t p0, index_t p1) {
    for (index_t p = p0; p < p1; ++p) {
      std::uint32_t* panel = dst + p * kg * 16;
      if (cs == 1)
        for (index_t g = 0; g < kg; ++g)
          for (index_t j = 0; j < 16; ++j)
            panel[g * 16 + j] = bf16_pair(value(2 * g, 16 * p + j), value(2 * g + 1, 16 * p + j));
      else
        for (index_t j = 0; j < 16; ++j)
          for (index_t g = 0; g < kg; ++g)
            panel[g * 16 + j] = bf16_pair(value(2 * g, 16 * p + j), value(2 * g + 1, 16 * p + j));
    }
  });
}
#endif

// dst (rows x cols, contiguous) = x (rows x cols, row stride ld) rounded to bf16.
void rounded_copy(float* dst, const float* x, index_t rows, index_t cols, index_t ld) {
  parallel_for(rows, threads_for(double(rows) * cols, kCopyGrain), 1, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r)
      for (index_t j = 0; j < cols; ++j)
        dst[r * cols + j] = float_from_bf16(bf16_from_float(x[r * ld + j]));
  });
}

}  // namespace

void round_to_bf16(float* dst, const float* x, index_t n) { rounded_copy(dst, x, 1, n, n); }

void gemm_bf16(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
               const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
               index_t ldc) {
  require(alpha == 1.0f && (beta == 0.0f || beta == 1.0f),
          "gemm_bf16: needs alpha = 1 and beta 0 or 1, got alpha " + std::to_string(alpha) +
              ", beta " + std::to_string(beta));
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (beta == 0.0f)
      for (index_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
    return;
  }
#if PYDL_X86
  if (has_avx512_bf16()) {
    const index_t kg = ceil_div(K, 2);
    Workspace<std::uint32_t> rows(M * kg), panels(ceil_div(N, 16) * kg * 16);
    pair_rows(rows.get(), A, trans_a ? 1 : lda, trans_a ? lda : 1, M, K);
    pair_panels(panels.get(), B, trans_b ? 1 : ldb, trans_b ? ldb : 1, K, N);
    static const DotKernelInfo<float> kernel{bf16_kernel, 6, 4};
    dot_gemm(kernel, M, N, kg, rows.get(), kg, panels.get(), C, ldc, beta == 1.0f,
             threads_for(2.0 * M * N * K, kFlopsPerThread),
             [](index_t, index_t, index_t, index_t) {});
    return;
  }
#endif
  // The stored layouts are kept (sgemm reads the transposes): A is M x K, or
  // K x M when trans_a; B is K x N, or N x K when trans_b.
  const index_t a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
  const index_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
  Workspace<float> a(a_rows * a_cols), b(b_rows * b_cols);
  rounded_copy(a.get(), A, a_rows, a_cols, lda);
  rounded_copy(b.get(), B, b_rows, b_cols, ldb);
  sgemm(trans_a, trans_b, M, N, K, 1.0f, a.get(), a_cols, b.get(), b_cols, beta, C, ldc);
}

const char* bf16_kernel_name() {
  if (has_avx512_bf16()) return "avx512_bf16";
  return use_avx2() ? "avx2" : "portable";
}

}  // namespace pydl
