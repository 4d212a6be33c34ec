// SGEMM, BLIS/Goto style: C = alpha * op(A) op(B) + beta * C.
//
// Loops, outermost first (the cache each packed block is sized for):
//   jc: N in steps of nc        B block kc x nc lives in L3
//   pc: K in steps of kc        pack op(B)[pc:pc+kc, jc:jc+nc] into NR-column panels
//   ic: M in steps of mc        pack op(A)[ic:ic+mc, pc:pc+kc] into MR-row panels (L2)
//   jr: nc in steps of NR       one B micro-panel (kc x NR) stays in L1 ...
//   ir: mc in steps of MR       ... while the A micro-panels stream past it
//   micro-kernel: C[MR x NR] += sum over kc of a[MR] (outer) b[NR], in registers.
// Packing reads any layout (both transposes, any leading dimension) and writes
// one: panel[k * R + r], zero-padded to R, so the micro-kernel sees only that.
// Two exceptions for small products: a row-major A used by at most a few B
// columns (N <= 64) is read in place instead of packed, and a column edge runs
// a tile as many vectors wide as it needs.
// The tile (MR x NR) is the instruction set's: YmmTile (6 x 16) for AVX2 and
// portable, ZmmTile for AVX-512; everything below is a template over it, with
// block sizes derived from the tile and the measured caches.
// Threads (gemm_on_threads) each run this nest on their own rectangles of C.
#include "gemm.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>

#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if PYDL_X86
#include <immintrin.h>
#endif

namespace pydl {

namespace {

// Register tiles. A k step is a rank-1 update of the MR x NR tile of C held in
// accumulators: NR/VW vector loads of B, MR broadcasts of A, MR * NR/VW FMAs.
// It needs at least latency x pipes = 4 x 2 = 8 independent accumulators,
// and as many more as the registers allow, since every accumulator divides
// the loads per FMA.
//
// YmmTile: 6 x 16 floats = 12 ymm accumulators, plus 2 for the B row and 1
// for the broadcast A value: 15 of the 16 ymm registers. Per k step it does
// 12 FMAs for 2 loads + 6 broadcasts, enough to keep both FMA pipes busy.
// The AVX2 and the portable kernels use it.
// Its B micro-panel fills half of L1, leaving room for the A micro-panel and
// the C tile; its A block half of L2.
struct YmmTile {
  static constexpr index_t MR = 6, NR = 16, VW = 8;  // VW: floats per vector
  static constexpr index_t RS = MR;                   // kernels exist for RS, 2 RS, .. MR rows
  static constexpr bool masked_edges = false;         // edges go through a local tile
  static constexpr double kc_l1_share = 0.5, mc_l2_share = 0.5;
};
// ZmmTile: 12 x 32 floats = 24 zmm accumulators, plus 2 for the B row and 1
// for the broadcast: 27 of the 32 zmm registers (the rest hold nothing the
// loop needs). Per k step: 24 FMAs (12 cycles on 2 pipes) for 2 loads + 12
// broadcasts, 7 cycles of 2 loads per cycle, so the FMAs set the pace. 14 x 32
// (28 + 3 = 31 registers) would leave GCC no room to spill, 8 x 48 needs
// 3-vector B rows that waste a third of the work at N = 64. Edges use mask
// registers: a column edge runs ceil(n / 16) vectors and stores the last one
// masked; a row edge runs 4 or 8 rows (M = 64 = 5 x 12 + 4) and stores its m.
// Blocks: the B micro-panel fills all of L1 (kc = 384 on 48 KiB) and streams
// from L2 past the A panels, the A block a quarter of L2. Measured at 2048^3
// on one busy Sapphire Rapids core: kc = L1/2 124 GFLOP/s, kc = L1 133, with
// the A block at a quarter of L2 138 (the C tile is loaded and stored K/kc
// times, and each call's fixed cost is amortized over kc steps); on a quiet
// core kc from L1/2 to 3 L1 and A blocks from 1/8 to 1/2 of L2 all gave
// 150-159, so the blocks are not what limits it there.
struct ZmmTile {
  static constexpr index_t MR = 12, NR = 32, VW = 16, RS = 4;
  static constexpr bool masked_edges = true;
  static constexpr double kc_l1_share = 1.0, mc_l2_share = 0.25;
};
// Packed panels hold a multiple of KU k steps (zero-padded), so on them the
// vector micro-kernels run whole unrolled trips (A read in place has odd steps).
constexpr index_t KU = 4;

// Row-major A is read in place, not packed, when at most this many columns of
// B reuse each A block: measured, packing A for N <= 64 cost more than it
// saved (64x576x64: 76 -> 62 us; 64x512x10: 23 -> 17 us), while at N = 512
// the packed copy was ~8% faster.
constexpr index_t kInPlaceACols = 64;

// Below this many flops per thread a second thread costs more than it saves.
constexpr double kFlopsPerThread = 2e6;

index_t round_up(index_t a, index_t b) { return ceil_div(a, b) * b; }
// Splits n into equal blocks of at most `cap`: 300 with cap 256 gives 150 + 150,
// not 256 + 44, so the last block is not a thin, slow one.
index_t balanced(index_t n, index_t cap) { return ceil_div(n, ceil_div(n, cap)); }
index_t padded(index_t kc) { return round_up(kc, KU); }

int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// ---- cache sizes -------------------------------------------------------------

struct CacheSizes {
  index_t l1, l2, l3;  // bytes per core for L1d and L2; L3 as reported
};

index_t cache_size(int name, index_t fallback, index_t lo, index_t hi) {
  long v = sysconf(name);
  return v > 0 ? std::clamp<index_t>(v, lo, hi) : fallback;
}

const CacheSizes& cache_sizes() {
  static const CacheSizes sizes = {
#if defined(_SC_LEVEL1_DCACHE_SIZE)
      cache_size(_SC_LEVEL1_DCACHE_SIZE, 32 << 10, 16 << 10, 256 << 10),
      cache_size(_SC_LEVEL2_CACHE_SIZE, 256 << 10, 128 << 10, 8 << 20),
      cache_size(_SC_LEVEL3_CACHE_SIZE, 8 << 20, 1 << 20, 64 << 20),
#else
      32 << 10, 256 << 10, 8 << 20,
#endif
  };
  return sizes;
}

// Block sizes for one product on tile T. kc: a B micro-panel (kc x NR) fills
// T::kc_l1_share of L1. mc: the packed A block (mc x kc) fills T::mc_l2_share
// of L2. nc: the packed B block (kc x nc) fills a quarter of L3 (shared by
// the cores), capped so small-L3 reports stay sane.
struct Blocking {
  index_t kc, mc_cap, nc, nc_cap;
};

template <class T>
Blocking blocking_for(index_t N, index_t K) {
  constexpr index_t MR = T::MR, NR = T::NR;
  const CacheSizes& cs = cache_sizes();
  const index_t kc_cap = std::clamp<index_t>(index_t(T::kc_l1_share * cs.l1) / (NR * 4), 64, 1024);
  const index_t kc = balanced(K, kc_cap);
  const index_t mc_cap =
      std::clamp<index_t>(index_t(T::mc_l2_share * cs.l2) / (kc * 4) / MR * MR, MR, 1020);
  const index_t nc_cap = std::clamp<index_t>(cs.l3 / 4 / (kc * 4) / NR * NR, 16 * NR, 4096);
  return {kc, mc_cap, round_up(balanced(N, nc_cap), NR), nc_cap};
}

// ---- operands ------------------------------------------------------------------

// op(A)(i, k) = a[i * a_rs + k * a_ks]; op(B)(k, j) = b[k * b_ks + j * b_cs].
struct Operands {
  index_t M, N, K;
  float alpha, beta;
  const float* a;
  index_t a_rs, a_ks;
  const float* b;
  index_t b_ks, b_cs;
  float* c;
  index_t ldc;
};

Operands make_operands(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
                       const float* A, index_t lda, const float* B, index_t ldb, float beta,
                       float* C, index_t ldc) {
  return {M, N, K, alpha, beta,
          A, trans_a ? 1 : lda, trans_a ? lda : 1,
          B, trans_b ? 1 : ldb, trans_b ? ldb : 1,
          C, ldc};
}

// C[m x n] = alpha * tile + beta * C; beta == 0 never reads C (it may hold NaN).
void store_tile(index_t m, index_t n, const float* tile, index_t ldt, float* c, index_t ldc,
                float alpha, float beta) {
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      const float v = alpha * tile[i * ldt + j];
      c[i * ldc + j] = beta == 0.0f ? v : v + beta * c[i * ldc + j];
    }
}

// C = beta * C, for K == 0 or alpha == 0 (BLAS: A and B are not read).
void scale_c(const Operands& op) {
  for (index_t i = 0; i < op.M; ++i) {
    float* row = op.c + i * op.ldc;
    for (index_t j = 0; j < op.N; ++j) row[j] = op.beta == 0.0f ? 0.0f : op.beta * row[j];
  }
}

// ---- packing -------------------------------------------------------------------
// A panel of R "rows" (rows of op(A), or columns of op(B)) over kc steps:
// dst[k * R + r] = src[r * rs + k * ks] for r < rows, zero for rows <= r < R
// and for kc <= k < padded(kc).

template <index_t R>
void pack_panel_generic(const float* src, index_t rs, index_t ks, index_t rows, index_t kc,
                        float* dst) {
  for (index_t k = 0; k < kc; ++k) {
    for (index_t r = 0; r < rows; ++r) dst[k * R + r] = src[r * rs + k * ks];
    for (index_t r = rows; r < R; ++r) dst[k * R + r] = 0.0f;
  }
}

#if PYDL_X86
// out[k] = (r0[k], ..., r7[k]): the 8 x 8 transpose, in registers.
PYDL_TARGET_AVX2 inline void transpose8(__m256 r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {
    s[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], _MM_SHUFFLE(1, 0, 1, 0));
    s[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], _MM_SHUFFLE(3, 2, 3, 2));
    s[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(1, 0, 1, 0));
    s[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
  }
}

// Panels whose source is contiguous along k (ks == 1): A not transposed, or B
// transposed. Eight k at a time, eight rows at a time: load 8 floats from each
// source row (zeros past `rows`), transpose in registers, store the group's
// part of R floats per k (all 8, or the 4 or 6 left at the end of a row of
// R). The k tail goes the generic way.
PYDL_TARGET_AVX2 inline __m256 load_row_avx2(const float* src, index_t rs, index_t i,
                                             index_t rows) {
  return i < rows ? _mm256_loadu_ps(src + i * rs) : _mm256_setzero_ps();
}

template <index_t R>
PYDL_TARGET_AVX2 index_t pack_rows_avx2(const float* src, index_t rs, index_t rows, index_t kc,
                                        float* dst) {
  static_assert(R % 8 == 0 || R % 8 == 4 || R % 8 == 6, "group widths 8, 6 or 4");
  index_t k = 0;
  for (; k + 8 <= kc; k += 8)
    for (index_t g = 0; g < R; g += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = load_row_avx2(src + k, rs, g + i, rows);
      transpose8(r);
      for (int j = 0; j < 8; ++j) {
        float* d = dst + (k + j) * R + g;
        if (g + 8 <= R) {
          _mm256_storeu_ps(d, r[j]);
        } else {
          _mm_storeu_ps(d, _mm256_castps256_ps128(r[j]));
          if (R - g == 6)
            _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), _mm256_extractf128_ps(r[j], 1));
        }
      }
    }
  return k;
}

// Panels contiguous along the panel (rs == 1: A transposed, B not), R a
// multiple of 16: per k, R/16 loads masked to the `rows` that exist, so an
// edge panel's zero padding comes from the same instructions.
template <index_t R>
PYDL_TARGET_AVX512 void pack_cols_avx512(const float* src, index_t ks, index_t rows, index_t kc,
                                         float* dst) {
  __mmask16 mask[R / 16];
  for (index_t v = 0; v < R / 16; ++v)
    mask[v] = _cvtu32_mask16((1u << std::clamp<index_t>(rows - 16 * v, 0, 16)) - 1);
  for (index_t k = 0; k < kc; ++k)
    for (index_t v = 0; v < R / 16; ++v)
      _mm512_storeu_ps(dst + k * R + 16 * v, _mm512_maskz_loadu_ps(mask[v], src + k * ks + 16 * v));
}
#endif

template <index_t R>
void pack_panel(const float* src, index_t rs, index_t ks, index_t rows, index_t kc, float* dst) {
  std::fill(dst + kc * R, dst + padded(kc) * R, 0.0f);
#if PYDL_X86
  if constexpr (R % 16 == 0) {
    if (rs == 1 && use_avx512()) return pack_cols_avx512<R>(src, ks, rows, kc, dst);
  }
#endif
  if (rows == R && rs == 1) {  // contiguous along the panel: R floats per k
    for (index_t k = 0; k < kc; ++k) std::memcpy(dst + k * R, src + k * ks, R * sizeof(float));
    return;
  }
#if PYDL_X86
  if (ks == 1 && use_avx2()) {
    const index_t done = pack_rows_avx2<R>(src, rs, rows, kc, dst);
    pack_panel_generic<R>(src + done, rs, ks, rows, kc - done, dst + done * R);
    return;
  }
#endif
  pack_panel_generic<R>(src, rs, ks, rows, kc, dst);
}

// op(A)[i0 : i0+mc, k0 : k0+kc] as MR-row panels.
template <class T>
void pack_a(const Operands& op, index_t i0, index_t mc, index_t k0, index_t kc, float* dst) {
  constexpr index_t MR = T::MR;
  for (index_t p = 0; p < ceil_div(mc, MR); ++p) {
    const index_t i = i0 + p * MR;
    pack_panel<MR>(op.a + i * op.a_rs + k0 * op.a_ks, op.a_rs, op.a_ks,
                   std::min(MR, i0 + mc - i), kc, dst + p * MR * padded(kc));
  }
}

// op(B)[k0 : k0+kc, j0 : j0+nc] as NR-column panels.
template <class T>
void pack_b(const Operands& op, index_t k0, index_t kc, index_t j0, index_t nc, float* dst) {
  constexpr index_t NR = T::NR;
  for (index_t p = 0; p < ceil_div(nc, NR); ++p) {
    const index_t j = j0 + p * NR;
    pack_panel<NR>(op.b + k0 * op.b_ks + j * op.b_cs, op.b_cs, op.b_ks,
                   std::min(NR, j0 + nc - j), kc, dst + p * NR * padded(kc));
  }
}

// ---- micro-kernels ---------------------------------------------------------------
// C[MR x W] = alpha * sum_k A(i, k) * b[k*NR + j] + beta * C (beta == 0: C is
// only written), for kc k steps and the first W of the panel's NR columns:
// W = NR, or fewer vectors for a column edge (on YmmTile, W = 8 for an edge of
// at most 8, which then costs 6 FMAs per k step instead of 12). A(i, k) =
// a[i * a_rs + k * KS]: a packed panel (KS = MR, a_rs = 1, kc a multiple of
// KU) or, unpacked, rows of a row-major A (KS = 1, a_rs = lda). Rows i >= m
// (an edge tile of unpacked A) read row m - 1 instead, so nothing past the
// matrix is touched. A tile with masked_edges stores only the m x n corner
// (n > W - VW); the others store all MR x W and the caller drops the rest.

using MicroKernel = void (*)(index_t kc, const float* a, index_t a_rs, index_t m, index_t n,
                             const float* b, float* c, index_t ldc, float alpha, float beta);

template <index_t KS, index_t W>
void micro_kernel_portable(index_t kc, const float* a, index_t a_rs, index_t m, index_t /*n*/,
                           const float* b, float* c, index_t ldc, float alpha, float beta) {
  constexpr index_t MR = YmmTile::MR, NR = YmmTile::NR;
  float acc[MR][W] = {};
  for (index_t k = 0; k < kc; ++k, b += NR)
    for (index_t i = 0; i < MR; ++i) {
      const float ai = a[std::min(i, m - 1) * a_rs + k * KS];
      for (index_t j = 0; j < W; ++j) acc[i][j] += ai * b[j];
    }
  store_tile(MR, W, &acc[0][0], W, c, ldc, alpha, beta);
}

#if PYDL_X86
// C row i (W floats: lo, and hi when W = 16) = alpha * acc + beta * C.
template <index_t W>
PYDL_TARGET_AVX2 inline void store_row_avx2(float* c, __m256 lo, __m256 hi, __m256 alpha,
                                            float beta) {
  lo = _mm256_mul_ps(alpha, lo);
  hi = _mm256_mul_ps(alpha, hi);
  if (beta != 0.0f) {
    const __m256 vb = _mm256_set1_ps(beta);
    lo = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), lo);
    if (W == 16) hi = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), hi);
  }
  _mm256_storeu_ps(c, lo);
  if (W == 16) _mm256_storeu_ps(c + 8, hi);
}

// The accumulators are twelve named variables, not an array: GCC keeps an
// array of vectors in memory and would store it back every k step.
template <index_t KS, index_t W>
PYDL_TARGET_AVX2 void micro_kernel_avx2(index_t kc, const float* a, index_t a_rs, index_t m,
                                        index_t /*n*/, const float* b, float* c, index_t ldc,
                                        float alpha, float beta) {
  constexpr index_t MR = YmmTile::MR, NR = YmmTile::NR;
  // C rows sit ldc apart, out of the prefetcher's sight: ask for them now so
  // they arrive while the k loop runs (a miss to L3 or DRAM at the end would
  // cost hundreds of cycles out of the ~6 kc cycles of arithmetic).
  for (index_t i = 0; i < MR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + W - 1), _MM_HINT_T0);
  }
  // A packed panel's rows are adjacent (and zero-padded): constant offsets
  // from one pointer, which keeps the loop free of spills.
  const bool packed = KS == MR;
  const index_t rs = packed ? 1 : a_rs, last = packed ? MR - 1 : m - 1;
  const float* a0 = a;
  const float* a1 = a + std::min<index_t>(1, last) * rs;
  const float* a2 = a + std::min<index_t>(2, last) * rs;
  const float* a3 = a + std::min<index_t>(3, last) * rs;
  const float* a4 = a + std::min<index_t>(4, last) * rs;
  const float* a5 = a + std::min<index_t>(5, last) * rs;
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
         c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  // One k step: a rank-1 update of the 6 x 16 tile.
  auto step = [&]() PYDL_TARGET_AVX2 {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = W == 16 ? _mm256_loadu_ps(b + 8) : b0;
    __m256 ai = _mm256_broadcast_ss(a0);
    c00 = _mm256_fmadd_ps(ai, b0, c00);
    if (W == 16) c01 = _mm256_fmadd_ps(ai, b1, c01);
    ai = _mm256_broadcast_ss(a1);
    c10 = _mm256_fmadd_ps(ai, b0, c10);
    if (W == 16) c11 = _mm256_fmadd_ps(ai, b1, c11);
    ai = _mm256_broadcast_ss(a2);
    c20 = _mm256_fmadd_ps(ai, b0, c20);
    if (W == 16) c21 = _mm256_fmadd_ps(ai, b1, c21);
    ai = _mm256_broadcast_ss(a3);
    c30 = _mm256_fmadd_ps(ai, b0, c30);
    if (W == 16) c31 = _mm256_fmadd_ps(ai, b1, c31);
    ai = _mm256_broadcast_ss(a4);
    c40 = _mm256_fmadd_ps(ai, b0, c40);
    if (W == 16) c41 = _mm256_fmadd_ps(ai, b1, c41);
    ai = _mm256_broadcast_ss(a5);
    c50 = _mm256_fmadd_ps(ai, b0, c50);
    if (W == 16) c51 = _mm256_fmadd_ps(ai, b1, c51);
    a0 += KS, a1 += KS, a2 += KS, a3 += KS, a4 += KS, a5 += KS;
    b += NR;
  };
  // Odd k steps first (unpacked A only: packed panels hold whole trips), then
  // KU steps per trip; a packed A panel (streaming from L2) is prefetched 8
  // steps ahead (unpacked rows are separate streams the hardware follows).
  index_t k = packed ? 0 : kc % KU;
#pragma GCC unroll 1
  for (index_t r = 0; r < k; ++r) step();
  for (; k < kc; k += KU) {
    if (packed) _mm_prefetch(reinterpret_cast<const char*>(a0 + 8 * MR), _MM_HINT_T0);
#pragma GCC unroll 4
    for (int u = 0; u < KU; ++u) step();
  }
  const __m256 va = _mm256_set1_ps(alpha);
  store_row_avx2<W>(c + 0 * ldc, c00, c01, va, beta);
  store_row_avx2<W>(c + 1 * ldc, c10, c11, va, beta);
  store_row_avx2<W>(c + 2 * ldc, c20, c21, va, beta);
  store_row_avx2<W>(c + 3 * ldc, c30, c31, va, beta);
  store_row_avx2<W>(c + 4 * ldc, c40, c41, va, beta);
  store_row_avx2<W>(c + 5 * ldc, c50, c51, va, beta);
}

// The ZmmTile kernel, NV vectors (W = 16 NV columns) wide, for the first ROWS
// rows of the panel (ROWS < MR: a row edge of at most ROWS). The accumulators
// are an array indexed only by unrolled constants, which GCC keeps in
// registers (checked in the disassembly: no stack access in the k loop).
template <index_t KS, index_t NV, index_t ROWS>
PYDL_TARGET_AVX512 void micro_kernel_avx512(index_t kc, const float* a, index_t a_rs, index_t m,
                                            index_t n, const float* b, float* c, index_t ldc,
                                            float alpha, float beta) {
  constexpr index_t NR = ZmmTile::NR;
  // C rows are prefetched as in the AVX2 kernel (they sit ldc apart).
  for (index_t i = 0; i < ROWS; ++i) {
    const float* row = c + std::min(i, m - 1) * ldc;
    _mm_prefetch(reinterpret_cast<const char*>(row), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(row + 16 * NV - 1), _MM_HINT_T0);
  }
  // Packed: A(i, k) = a[k * KS + i], constant offsets from one pointer; in
  // place: A(i, k) = rows[i][k].
  constexpr bool packed = KS == ZmmTile::MR;
  const float* rows[ROWS];
  for (index_t i = 0; i < ROWS; ++i) rows[i] = a + std::min(i, m - 1) * a_rs;
  __m512 acc[ROWS][NV];
#pragma GCC unroll 12
  for (index_t i = 0; i < ROWS; ++i)
#pragma GCC unroll 3
    for (index_t v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  // One k step per trip, unrolled by KU; a packed A panel (streaming from L2)
  // is prefetched 8 steps ahead, a line every step.
#pragma GCC unroll 4
  for (index_t k = 0; k < kc; ++k) {
    if constexpr (packed) _mm_prefetch(reinterpret_cast<const char*>(a + 8 * KS), _MM_HINT_T0);
    __m512 bv[NV];
#pragma GCC unroll 3
    for (index_t v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 12
    for (index_t i = 0; i < ROWS; ++i) {
      const __m512 ai = _mm512_set1_ps(packed ? a[i] : rows[i][k]);
#pragma GCC unroll 3
      for (index_t v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    if constexpr (packed) a += KS;
    b += NR;
  }
  // Row i < m of C = alpha * acc + beta * C; the last vector masked to n.
  const __mmask16 last_mask = _cvtu32_mask16((1u << (n - 16 * (NV - 1))) - 1);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (index_t i = 0; i < ROWS; ++i) {
    if (i >= m) break;
#pragma GCC unroll 3
    for (index_t v = 0; v < NV; ++v) {
      const __mmask16 mask = v == NV - 1 ? last_mask : __mmask16(0xffff);
      float* cv = c + i * ldc + 16 * v;
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, cv), r);
      _mm512_mask_storeu_ps(cv, mask, r);
    }
  }
}
#endif

// The kernels of tile T for A steps of KS, by height and width: entry
// [r - 1][w - 1] runs r * RS rows and w vectors.
template <class T>
using KernelSet = std::array<std::array<MicroKernel, T::NR / T::VW>, T::MR / T::RS>;

template <class T, index_t KS>
KernelSet<T> micro_kernels() {
#if PYDL_X86
  if constexpr (std::is_same_v<T, ZmmTile>) {
    return {{{micro_kernel_avx512<KS, 1, 4>, micro_kernel_avx512<KS, 2, 4>},
             {micro_kernel_avx512<KS, 1, 8>, micro_kernel_avx512<KS, 2, 8>},
             {micro_kernel_avx512<KS, 1, 12>, micro_kernel_avx512<KS, 2, 12>}}};
  } else {
    if (use_avx2()) return {{{micro_kernel_avx2<KS, 8>, micro_kernel_avx2<KS, 16>}}};
  }
#endif
  return {{{micro_kernel_portable<KS, 8>, micro_kernel_portable<KS, 16>}}};
}

// The A side of one macro-kernel call: rows i0 .. i0+mc of op(A) over one k
// block, either packed (MR-row panels, padded to kp k steps) or read in place.
template <class T>
struct ABlock {
  const float* a;      // row 0 of the block
  index_t row_step;    // pointer step per row of op(A): kp packed, lda in place
  index_t kernel_rs;   // a_rs for the micro-kernel: 1 packed, lda in place
  index_t k_steps;     // kp packed (zero-padded), kc in place
  KernelSet<T> kernels;
};

// One A block (mc rows) times the packed B block (nc columns, padded to kp k
// steps), into C at (i0, j0). An edge takes the smallest kernel that covers
// it; on a tile without masked edges, edge tiles go through a local tile.
template <class T>
void macro_kernel(const ABlock<T>& ab, const Operands& op, index_t i0, index_t mc, index_t j0,
                  index_t nc, index_t kp, const float* packed_b, float beta) {
  constexpr index_t MR = T::MR, NR = T::NR;
  alignas(64) float tile[MR * NR];
  for (index_t j = 0; j < nc; j += NR) {
    const index_t n = std::min(NR, nc - j), vectors = ceil_div(n, T::VW);
    const float* bp = packed_b + j * kp;
    for (index_t i = 0; i < mc; i += MR) {
      const index_t m = std::min(MR, mc - i);
      const MicroKernel kernel = ab.kernels[ceil_div(m, T::RS) - 1][vectors - 1];
      const float* ap = ab.a + i * ab.row_step;
      float* c = op.c + (i0 + i) * op.ldc + j0 + j;
      if (T::masked_edges || (m == MR && n == vectors * T::VW)) {
        kernel(ab.k_steps, ap, ab.kernel_rs, m, n, bp, c, op.ldc, op.alpha, beta);
      } else {
        kernel(ab.k_steps, ap, ab.kernel_rs, m, n, bp, tile, NR, 1.0f, 0.0f);
        store_tile(m, n, tile, NR, c, op.ldc, op.alpha, beta);
      }
    }
  }
}

// ---- the blocked driver ------------------------------------------------------------

// Packing an A block pays when many B micro-panels reuse it; a row-major A
// used by only a few is read in place (each micro-panel broadcasts from MR row
// streams), skipping a copy of the whole block. But MR short row streams
// coming from memory stall the micro-kernel (10816x288x64: 7.0 ms packed, 8.2
// in place), so only an A that fits in half of L2 is read in place, or one
// with K < 16, where padding the packed panels to KU steps would waste up to
// a quarter of the arithmetic (43264x9x32: 633 -> 445 us in place).
template <class T>
bool reads_a_in_place(const Operands& op, const Blocking& bl) {
  const bool a_cached = double(op.M) * op.K * sizeof(float) <= cache_sizes().l2 / 2;
  return op.a_ks == 1 && round_up(std::min(op.N, bl.nc), T::NR) <= kInPlaceACols &&
         (a_cached || op.K < 4 * KU);
}

// The loop nest at the top of this file, on one thread, for the whole of `op`
// (or the rectangle of C it was narrowed to). Buffers as PackBuffers gives.
template <class T>
void gemm_blocked(const Operands& op, float* packed_a, float* packed_b) {
  const Blocking bl = blocking_for<T>(op.N, op.K);
  const index_t mc_step = round_up(balanced(op.M, bl.mc_cap), T::MR);
  const bool a_in_place = reads_a_in_place<T>(op, bl);
  const KernelSet<T> packed = micro_kernels<T, T::MR>(), in_place = micro_kernels<T, 1>();
  for (index_t jc = 0; jc < op.N; jc += bl.nc) {
    const index_t nc = std::min(bl.nc, op.N - jc);
    for (index_t pc = 0; pc < op.K; pc += bl.kc) {
      const index_t kc = std::min(bl.kc, op.K - pc), kp = padded(kc);
      const float beta = pc == 0 ? op.beta : 1.0f;  // later k blocks accumulate
      pack_b<T>(op, pc, kc, jc, nc, packed_b);
      for (index_t ic = 0; ic < op.M; ic += mc_step) {
        const index_t mc = std::min(mc_step, op.M - ic);
        ABlock<T> ab;
        if (a_in_place) {
          ab = {op.a + ic * op.a_rs + pc, op.a_rs, op.a_rs, kc, in_place};
        } else {
          pack_a<T>(op, ic, mc, pc, kc, packed_a);
          ab = {packed_a, kp, 1, kp, packed};
        }
        macro_kernel(ab, op, ic, mc, jc, nc, kp, packed_b, beta);
      }
    }
  }
}

// Packing buffers for `copies` threads: an mc x kc A block and a kc x nc B
// block each, at the largest sizes blocking_for gives for op or any rectangle
// of it. Allocated before any parallel region, so running out of memory is an
// exception, not a crash.
template <class T>
struct PackBuffers {
  PackBuffers(const Operands& op, int copies)
      : bl(blocking_for<T>(op.N, op.K)),
        a_size(std::size_t(bl.mc_cap) * padded(bl.kc)),
        b_size(std::size_t(padded(bl.kc)) * round_up(std::min(op.N, bl.nc_cap), T::NR)),
        a(a_size * copies),
        b(b_size * copies) {}
  float* a_for(int copy) const { return a.get() + a_size * copy; }
  float* b_for(int copy) const { return b.get() + b_size * copy; }
  Blocking bl;
  std::size_t a_size, b_size;
  Workspace<float> a, b;
};

// Threads take rectangles of C, row ranges or column ranges, each packing
// what it needs for itself, so threads never wait on each other. A row split
// makes every extra rectangle repack all of op(B) (K x N floats); a column
// split, all of op(A) (M x K), or, when A is read in place, only re-read it
// (counted as a quarter of a pack): the split taken is the one that repeats
// less. Rectangles are at least ~256 wide (repacking stays a few percent of
// the arithmetic), up to 4 per thread and a multiple of the thread count (3
// parts on 2 threads would leave one thread a third idle), handed out
// dynamically: a thread that loses its core to another process leaves its
// share to the others instead of holding up the whole product.
template <class T>
void gemm_on_threads(const Operands& op, int nt) {
  if (op.M == 0 || op.N == 0) return;
  if (op.K == 0 || op.alpha == 0.0f) return scale_c(op);
  const index_t row_tiles = ceil_div(op.M, T::MR), col_tiles = ceil_div(op.N, T::NR);
  const double repack_rows = double(op.K) * op.N;
  const double repack_cols =
      double(op.M) * op.K * (reads_a_in_place<T>(op, blocking_for<T>(op.N, op.K)) ? 0.25 : 1.0);
  bool by_rows = repack_rows <= repack_cols;
  if ((by_rows ? row_tiles : col_tiles) < nt) by_rows = row_tiles >= col_tiles;
  const index_t unit = by_rows ? T::MR : T::NR;
  const index_t tiles = by_rows ? row_tiles : col_tiles;
  nt = static_cast<int>(std::min<index_t>(nt, tiles));
  const index_t parts =
      std::min<index_t>(tiles, nt * std::clamp<index_t>(tiles * unit / (256 * nt), 1, 4));
  PackBuffers<T> buf(op, nt);
  if (nt == 1) return gemm_blocked<T>(op, buf.a_for(0), buf.b_for(0));

#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (index_t part = 0; part < parts; ++part) {
    const index_t lo = std::min(tiles * part / parts * unit, by_rows ? op.M : op.N);
    const index_t hi = std::min(tiles * (part + 1) / parts * unit, by_rows ? op.M : op.N);
    Operands sub = op;
    if (by_rows) {
      sub.M = hi - lo;
      sub.a += lo * op.a_rs;
      sub.c += lo * op.ldc;
    } else {
      sub.N = hi - lo;
      sub.b += lo * op.b_cs;
      sub.c += lo;
    }
    const int t = thread_index();
    if (hi > lo) gemm_blocked<T>(sub, buf.a_for(t), buf.b_for(t));
  }
}

// Runs fn(tile) on the active instruction set's tile.
template <class Fn>
void on_active_tile(const Fn& fn) {
#if PYDL_X86
  if (use_avx512()) return fn(ZmmTile{});
#endif
  fn(YmmTile{});
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
           const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
           index_t ldc) {
  const Operands op = make_operands(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  on_active_tile([&](auto tile) {
    gemm_on_threads<decltype(tile)>(op, threads_for(2.0 * M * N * K, kFlopsPerThread));
  });
}

void sgemm_batched(index_t batch, bool trans_a, bool trans_b, index_t M, index_t N, index_t K,
                   float alpha, const float* A, index_t lda, index_t stride_a, const float* B,
                   index_t ldb, index_t stride_b, float beta, float* C, index_t ldc,
                   index_t stride_c) {
  if (batch == 0 || M == 0 || N == 0) return;
  // One B for all and A, C stacked row after row: a single (batch*M, N, K) product.
  if (stride_b == 0 && !trans_a && stride_a == M * lda && stride_c == M * ldc)
    return sgemm(false, trans_b, batch * M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);

  const double flops = 2.0 * M * N * K;
  auto product = [&](index_t i) {
    return make_operands(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda,
                         B + i * stride_b, ldb, beta, C + i * stride_c, ldc);
  };
  const int nt_each = threads_for(flops, kFlopsPerThread);
  if (nt_each > 1 || batch == 1) {  // big products: thread inside each
    on_active_tile([&](auto tile) {
      for (index_t i = 0; i < batch; ++i) gemm_on_threads<decltype(tile)>(product(i), nt_each);
    });
    return;
  }
  // Small products: whole products per thread, one set of packing buffers each.
  const int nt = static_cast<int>(std::min<index_t>(batch, threads_for(flops * batch, kFlopsPerThread)));
  if (K == 0 || alpha == 0.0f) {
    for (index_t i = 0; i < batch; ++i) scale_c(product(i));
    return;
  }
  on_active_tile([&](auto tile) {
    using T = decltype(tile);
    PackBuffers<T> buf(product(0), nt);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (index_t i = 0; i < batch; ++i) {
      const int t = thread_index();
      gemm_blocked<T>(product(i), buf.a_for(t), buf.b_for(t));
    }
  });
}

}  // namespace pydl
