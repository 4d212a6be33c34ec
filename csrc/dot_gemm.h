// The blocked driver of the low-precision GEMMs (quant.cpp: int8, bf16.cpp:
// bfloat16). Both multiply operands whose k axis comes in 32-bit groups:
//   int8:  4 consecutive k of u8 activations and of s8 weights -> int32 (vpdpbusd)
//   bf16:  2 consecutive k of bfloat16                          -> float (vdpbf16ps)
// so one loop nest serves both; only the micro-kernel knows what a group holds.
//
// C (M x N, Acc, row stride ldc) = (or +=) A . B, where
//   A: M rows of kg groups, row stride lda groups, read in place;
//   B: packed in ceil(N / 16) panels of 16 columns (zero past N), group g of
//      column 16p + j at b[(p * kg + g) * 16 + j]: one 64-byte vector per
//      group step of a panel.
// Loops, outermost first: rows in blocks of kRowBlock (the A block and the
// block's C columns stay in L2), panels in steps of the micro-kernel's width,
// k in blocks of kGroupBlock (the micro-kernel's B panels, <= 32 KiB, stay in
// L1 while the A rows stream past), rows in steps of the micro-kernel's height.
// The C tiles of one panel step are summed over all k blocks while in L2.
#pragma once
#include <algorithm>
#include <cstdint>

#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pydl {

// C[m x cols] (=, or += when accumulate) sum over kg groups of
// A(i, g) . b_panel(g, j), for MR rows of A (rows i >= m read row m - 1, so
// nothing past A is touched, and are not stored) and the first cols <= 16 *
// panels columns of the panels, which sit panel_stride words apart.
template <class Acc>
using DotKernel = void (*)(index_t kg, const std::uint32_t* a, index_t lda, index_t m,
                           const std::uint32_t* b, index_t panels, index_t panel_stride, Acc* c,
                           index_t ldc, index_t cols, bool accumulate);

template <class Acc>
struct DotKernelInfo {
  DotKernel<Acc> run;
  index_t rows;        // MR: rows of A per call
  index_t max_panels;  // panels of 16 columns per call
};

// Elements per thread below which the passes around these GEMMs (bf16 conversion,
// int8 quantize, im2col and packing) stay on one thread: they take ~0.1 ns an
// element, less than waking a second thread costs on a busy machine (a batch-256
// MLP layer's 200K inputs stay on one).
constexpr double kCopyGrain = 1 << 20;

namespace dot_gemm_detail {
constexpr index_t kGroupBlock = 128;  // 128 groups x 64 B x 4 panels = 32 KiB of B
constexpr index_t kRowBlock = 240;    // C: 240 rows x 64 columns x 4 B = 60 KiB
}  // namespace dot_gemm_detail

// Runs the nest on `threads` threads, each on its own rectangles of C (row
// ranges, or panel ranges when there are more panels than row tiles), handed
// out dynamically. After a rectangle is complete, finish(row0, row1, col0,
// col1) runs on the same thread while it is in cache (int8: the float epilogue).
template <class Acc, class Finish>
void dot_gemm(const DotKernelInfo<Acc>& kernel, index_t M, index_t N, index_t kg,
              const std::uint32_t* a, index_t lda, const std::uint32_t* b, Acc* c, index_t ldc,
              bool accumulate, int threads, const Finish& finish) {
  using namespace dot_gemm_detail;
  if (M == 0 || N == 0) return;
  const index_t panels = ceil_div(N, 16);
  const index_t mr = kernel.rows, np = kernel.max_panels;
  const index_t row_tiles = ceil_div(M, mr), panel_tiles = ceil_div(panels, np);
  const bool by_rows = row_tiles >= panel_tiles;
  const index_t tiles = by_rows ? row_tiles : panel_tiles;
  threads = static_cast<int>(std::min<index_t>(std::max(threads, 1), tiles));
  const index_t parts = std::min<index_t>(tiles, threads * 4);
  const index_t row_block = ceil_div(kRowBlock, mr) * mr;

  auto rectangle = [&](index_t r0, index_t r1, index_t p0, index_t p1) {
    for (index_t ib = r0; ib < r1; ib += row_block) {
      const index_t ie = std::min(r1, ib + row_block);
      for (index_t p = p0; p < p1; p += np) {
        const index_t pn = std::min(np, p1 - p), cols = std::min(16 * pn, N - 16 * p);
        for (index_t g0 = 0; g0 == 0 || g0 < kg; g0 += kGroupBlock) {  // K = 0 stores zeros
          const index_t gn = std::min(kGroupBlock, kg - g0);
          const std::uint32_t* bp = b + (p * kg + g0) * 16;
          for (index_t i = ib; i < ie; i += mr)
            kernel.run(gn, a + i * lda + g0, lda, std::min(mr, ie - i), bp, pn, kg * 16,
                       c + i * ldc + p * 16, ldc, cols, accumulate || g0 > 0);
        }
      }
    }
    finish(r0, r1, 16 * p0, std::min(N, 16 * p1));
  };
  auto part = [&](index_t q) {
    const index_t lo = tiles * q / parts, hi = tiles * (q + 1) / parts;
    if (by_rows)
      rectangle(lo * mr, std::min(M, hi * mr), 0, panels);
    else
      rectangle(0, M, lo * np, std::min(panels, hi * np));
  };
  if (threads <= 1) {
    for (index_t q = 0; q < parts; ++q) part(q);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (index_t q = 0; q < parts; ++q) part(q);
}

}  // namespace pydl
