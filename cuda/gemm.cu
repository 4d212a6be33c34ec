// SGEMM, C = alpha*op(A)*op(B) + beta*C, by two kernels over one blocking.
// Each block computes a BM x BN tile of C, walking K in slabs of BK staged in
// shared memory and double-buffered: while the block computes on slab s, the
// copies of slab s+1 into the other buffer are in flight (cp.async on sm_80+),
// and one __syncthreads per slab separates the two (pipeline_over_k).
//  - SIMT FP32: slabs k-major (As[k][m], Bs[k][n]); each thread accumulates a
//    TM x TN micro-tile, acc[i][j] += As[k][m_i] * Bs[k][n_j], from float4 reads
//    of As and Bs. A thread's rows are TM/4 runs of 4 spaced BM/(TM/4) apart
//    (columns likewise), so the float4 reads of a warp spread over the banks.
//  - TF32 tensor cores (wmma m16n16k8, float accumulators): slabs keep each
//    operand's stored layout, read by wmma as a row- or column-major tile, so
//    every copy is a straight 16-byte one; each warp accumulates a WM x WN
//    part of the block tile in 16 x 16 fragments.
// Batches run over gridDim.z; edge tiles load zeros and store under bounds.
#include "gemm.cuh"

#include <algorithm>
#include <type_traits>

namespace pydl::cuda {
namespace gemm_detail {

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct SimtTile {
  static constexpr bool kTensorCores = false;
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int kThreads = (BM / TM) * (BN / TN);
  static constexpr int kPad = 4;  // shared row padding; keeps rows 16-byte aligned
  static_assert(TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "float4 runs");
};
// 256 threads each; the large tile reuses each loaded value 8 times per thread
// but needs enough output tiles to fill the device.
using LargeTile = SimtTile<128, 128, 8, 8, 8>;
using SmallTile = SimtTile<64, 64, 8, 4, 4>;

// Warps of WM x WN over a BM x BN block tile; BK a multiple of wmma's k of 8.
template <int BM_, int BN_, int BK_, int WM_, int WN_>
struct Tf32Tile {
  static constexpr bool kTensorCores = true;
  static constexpr int BM = BM_, BN = BN_, BK = BK_, WM = WM_, WN = WN_;
  static constexpr int kWarpsN = BN / WN;
  static constexpr int kThreads = 32 * (BM / WM) * kWarpsN;
  static constexpr int kPad = 4;  // keeps wmma tiles 32-byte aligned, rows 4 banks apart
  static_assert(WM % 16 == 0 && WN % 16 == 0 && BK % 8 == 0, "whole 16x16x8 fragments");
};
using LargeTf32Tile = Tf32Tile<128, 128, 16, 64, 32>;  // 8 warps, 4x2 fragments each
using SmallTf32Tile = Tf32Tile<64, 64, 16, 32, 32>;    // 4 warps, 2x2 fragments each

struct GemmParams {
  index_t batch, M, N, K;
  float alpha, beta;
  const float* A;
  index_t lda, stride_a;
  const float* B;
  index_t ldb, stride_b;
  float* C;
  index_t ldc, stride_c;
  bool vec_a, vec_b, vec_c;  // float4 accesses to this operand are 16-byte aligned
};

// Copies the kRows x kCols tile at (r0, c0) of a row-major matrix (row stride
// ld, rows x cols in all) to dst[r * (kCols + kPad) + c], zeros outside the
// matrix. A thread moves runs of 4 floats along a row: one 16-byte
// asynchronous copy when `vec` and the run lies inside the matrix, else
// element by element, done at once (the caller's wait and barrier order both).
template <int kRows, int kCols, int kPad, int kThreads>
__device__ __forceinline__ void copy_tile(float* dst, const float* __restrict__ src, index_t ld,
                                          index_t r0, index_t c0, index_t rows, index_t cols,
                                          bool vec) {
  constexpr int kRunsPerRow = kCols / 4;
  for (int v = threadIdx.x; v < kRows * kRunsPerRow; v += kThreads) {
    const int r = v / kRunsPerRow, c = v % kRunsPerRow * 4;
    const index_t gr = r0 + r, gc = c0 + c;
    float* d = dst + r * (kCols + kPad) + c;
    if (vec && gr < rows && gc + 3 < cols) {
      copy_async_16(d, src + gr * ld + gc);
    } else {
      float e[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        e[i] = gr < rows && gc + i < cols ? __ldg(src + gr * ld + gc + i) : 0.0f;
      *reinterpret_cast<float4*>(d) = make_float4(e[0], e[1], e[2], e[3]);
    }
  }
}

// The double-buffered walk over K: fetch(k0, buf) starts the copies of the
// slab at k0 into buffer buf, land(buf) completes them, compute(buf) uses a
// landed buffer. Slab s+1 is in flight while slab s is computed on; the
// barrier closing each step publishes slab s+1 and frees buffer s for s+2.
template <int BK, class Fetch, class Land, class Compute>
__device__ __forceinline__ void pipeline_over_k(index_t K, Fetch fetch, Land land,
                                                Compute compute) {
  fetch(0, 0);
  land(0);
  __syncthreads();
  int buf = 0;
  for (index_t k0 = 0; k0 < K; k0 += BK, buf ^= 1) {
    const bool more = k0 + BK < K;
    if (more) fetch(k0 + BK, buf ^ 1);
    compute(buf);
    if (more) land(buf ^ 1);
    __syncthreads();
  }
}

// C[m, n..n+3] = alpha * acc[0..3] + beta * C[m, n..n+3] for the columns below
// N, where beta == 0 never reads C.
__device__ __forceinline__ void store_c_run(const GemmParams& p, float* C, index_t m, index_t n,
                                            const float* acc) {
  float* c = C + m * p.ldc + n;
  float out[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) out[j] = p.alpha * acc[j];
  if (p.vec_c && n + 3 < p.N) {
    if (p.beta != 0.0f) {
      const float4 old = *reinterpret_cast<const float4*>(c);
      out[0] += p.beta * old.x, out[1] += p.beta * old.y;
      out[2] += p.beta * old.z, out[3] += p.beta * old.w;
    }
    *reinterpret_cast<float4*>(c) = make_float4(out[0], out[1], out[2], out[3]);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (n + j < p.N) c[j] = p.beta != 0.0f ? out[j] + p.beta * c[j] : out[j];
  }
}

// ---- SIMT FP32 ---------------------------------------------------------------------

// Loads the BK x BX slab of op(X) at (k0, x0) into dst[k * (BX + kPad) + x],
// zeros outside op(X)'s K x extent. X is stored x-contiguous (element (k, x)
// at src[k*ld + x]): the slab is a straight tile copy. Or k-contiguous (at
// src[x*ld + k]): the slab is transposed on its way, which a 16-byte copy
// cannot do, so fetch() loads this thread's runs into registers before the
// block computes on the current slab and land() stores them after.
template <int BK, int BX, int kPad, int kThreads, bool kKContiguous>
struct SimtSlab {
  __device__ __forceinline__ void fetch(float* dst, const float* __restrict__ src, index_t ld,
                                        index_t x0, index_t k0, index_t extent, index_t K,
                                        bool vec) {
    copy_tile<BK, BX, kPad, kThreads>(dst, src, ld, k0, x0, K, extent, vec);
  }
  __device__ __forceinline__ void land(float*) const {}
};

template <int BK, int BX, int kPad, int kThreads>
struct SimtSlab<BK, BX, kPad, kThreads, true> {
  static constexpr int kRunsPerLine = BK / 4, kRunsTotal = BX * kRunsPerLine;
  static constexpr int kRuns = (kRunsTotal + kThreads - 1) / kThreads;  // per thread
  float e[kRuns][4];

  __device__ __forceinline__ void fetch(float*, const float* __restrict__ src, index_t ld,
                                        index_t x0, index_t k0, index_t extent, index_t K,
                                        bool vec) {
#pragma unroll
    for (int j = 0; j < kRuns; ++j) {
      const int v = threadIdx.x + j * kThreads;
      if (v >= kRunsTotal) break;
      const index_t gx = x0 + v / kRunsPerLine, gk = k0 + v % kRunsPerLine * 4;
      if (vec && gx < extent && gk + 3 < K) {
        const float4 q = __ldg(reinterpret_cast<const float4*>(src + gx * ld + gk));
        e[j][0] = q.x, e[j][1] = q.y, e[j][2] = q.z, e[j][3] = q.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i)
          e[j][i] = gx < extent && gk + i < K ? __ldg(src + gx * ld + gk + i) : 0.0f;
      }
    }
  }
  __device__ __forceinline__ void land(float* dst) const {
#pragma unroll
    for (int j = 0; j < kRuns; ++j) {
      const int v = threadIdx.x + j * kThreads;
      if (v >= kRunsTotal) break;
      const int x = v / kRunsPerLine, k = v % kRunsPerLine * 4;
#pragma unroll
      for (int i = 0; i < 4; ++i) dst[(k + i) * (BX + kPad) + x] = e[j][i];
    }
  }
};

// Both kernels declare a minimum of 1 block per multiprocessor: without it
// ptxas (CUDA 13) trims registers to fit more blocks and spills accumulators.
template <class Tile, bool kTransA, bool kTransB>
__global__ void __launch_bounds__(Tile::kThreads, 1) sgemm_simt_kernel(GemmParams p) {
  constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, TM = Tile::TM, TN = Tile::TN;
  constexpr int kRowA = BM + Tile::kPad, kRowB = BN + Tile::kPad;
  constexpr int kRunStrideM = BM / (TM / 4), kRunStrideN = BN / (TN / 4);
  __shared__ __align__(16) float As[2][BK * kRowA];
  __shared__ __align__(16) float Bs[2][BK * kRowB];
  // A stored (M,K) is k-contiguous, stored (K,M) (trans_a) m-contiguous;
  // B stored (K,N) is n-contiguous, stored (N,K) (trans_b) k-contiguous.
  SimtSlab<BK, BM, Tile::kPad, Tile::kThreads, !kTransA> slab_a;
  SimtSlab<BK, BN, Tile::kPad, Tile::kThreads, kTransB> slab_b;

  const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
  const index_t m0 = index_t(blockIdx.y) * BM, n0 = index_t(blockIdx.x) * BN;
  for (index_t b = blockIdx.z; b < p.batch; b += gridDim.z) {
    const float* A = p.A + b * p.stride_a;
    const float* B = p.B + b * p.stride_b;
    float* C = p.C + b * p.stride_c;
    float acc[TM][TN] = {};
    const auto fetch = [&](index_t k0, int buf) {
      slab_a.fetch(As[buf], A, p.lda, m0, k0, p.M, p.K, p.vec_a);
      slab_b.fetch(Bs[buf], B, p.ldb, n0, k0, p.N, p.K, p.vec_b);
      copy_async_commit();
    };
    const auto land = [&](int buf) {
      slab_a.land(As[buf]);
      slab_b.land(Bs[buf]);
      copy_async_wait<0>();
    };
    const auto compute = [&](int buf) {
#pragma unroll
      for (int k = 0; k < BK; ++k) {
        float a[TM], bv[TN];
#pragma unroll
        for (int r = 0; r < TM / 4; ++r) {
          const float4 q =
              *reinterpret_cast<const float4*>(&As[buf][k * kRowA + r * kRunStrideM + ty * 4]);
          a[r * 4] = q.x, a[r * 4 + 1] = q.y, a[r * 4 + 2] = q.z, a[r * 4 + 3] = q.w;
        }
#pragma unroll
        for (int r = 0; r < TN / 4; ++r) {
          const float4 q =
              *reinterpret_cast<const float4*>(&Bs[buf][k * kRowB + r * kRunStrideN + tx * 4]);
          bv[r * 4] = q.x, bv[r * 4 + 1] = q.y, bv[r * 4 + 2] = q.z, bv[r * 4 + 3] = q.w;
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], bv[j], acc[i][j]);
      }
    };
    pipeline_over_k<BK>(p.K, fetch, land, compute);

#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const index_t m = m0 + (i / 4) * kRunStrideM + ty * 4 + i % 4;
      if (m >= p.M) continue;
#pragma unroll
      for (int r = 0; r < TN / 4; ++r)
        store_c_run(p, C, m, n0 + r * kRunStrideN + tx * 4, &acc[i][r * 4]);
    }
  }
}

// ---- TF32 tensor cores -------------------------------------------------------------
// wmma's TF32 fragments exist from sm_80 on; for older targets the kernel is
// an empty shell that the host never launches (has_ampere_features()).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define PYDL_GEMM_TF32 1
#endif

// The shared slab of one operand in its stored layout, as wmma reads it: an
// x-contiguous operand as [k][x] (rows of BX), a k-contiguous one as [x][k].
template <int BX, int BK, int kPad, bool kKContiguous>
struct Tf32Slab {
  static constexpr int kRows = kKContiguous ? BX : BK, kCols = kKContiguous ? BK : BX;
  static constexpr int kLd = kCols + kPad;
  static constexpr int kFloats = kRows * kLd;
  static_assert(kLd % 4 == 0 && kFloats % 8 == 0, "wmma needs 32-byte aligned tiles");
  // Where element (x, k) lives.
  __host__ __device__ static constexpr int offset(int x, int k) {
    return kKContiguous ? x * kLd + k : k * kLd + x;
  }

  template <int kThreads>
  __device__ __forceinline__ static void fetch(float* dst, const float* __restrict__ src,
                                               index_t ld, index_t x0, index_t k0,
                                               index_t extent, index_t K, bool vec) {
    if constexpr (kKContiguous)
      copy_tile<kRows, kCols, kPad, kThreads>(dst, src, ld, x0, k0, extent, K, vec);
    else
      copy_tile<kRows, kCols, kPad, kThreads>(dst, src, ld, k0, x0, K, extent, vec);
  }
};

template <class Tile, bool kTransA, bool kTransB>
__global__ void __launch_bounds__(Tile::kThreads, 1) sgemm_tf32_kernel(GemmParams p) {
#if defined(PYDL_GEMM_TF32)
  namespace wmma = nvcuda::wmma;
  constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, WM = Tile::WM, WN = Tile::WN;
  constexpr int kFragsM = WM / 16, kFragsN = WN / 16;
  // A stored (M,K) is k-contiguous: a row-major op(A) tile; stored (K,M), a
  // column-major one. B stored (K,N) is a row-major op(B) tile; (N,K), column-major.
  using SlabA = Tf32Slab<BM, BK, Tile::kPad, !kTransA>;
  using SlabB = Tf32Slab<BN, BK, Tile::kPad, kTransB>;
  using LayoutA = std::conditional_t<kTransA, wmma::col_major, wmma::row_major>;
  using LayoutB = std::conditional_t<kTransB, wmma::col_major, wmma::row_major>;
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LayoutA>;
  using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LayoutB>;
  using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
  // Two stages of both slabs; after the K walk, the same memory stages each
  // warp's 16 x 16 results on their way to C.
  constexpr int kStage = SlabA::kFloats + SlabB::kFloats;
  constexpr int kResultLd = 16 + Tile::kPad, kResultFloats = 16 * kResultLd;
  constexpr int kResultsFloats = Tile::kThreads / 32 * kResultFloats;
  constexpr int kSmemFloats = 2 * kStage > kResultsFloats ? 2 * kStage : kResultsFloats;
  __shared__ __align__(32) float smem[kSmemFloats];
  const auto slab_a = [&](int buf) { return smem + buf * kStage; };
  const auto slab_b = [&](int buf) { return smem + buf * kStage + SlabA::kFloats; };

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm0 = warp / Tile::kWarpsN * WM, wn0 = warp % Tile::kWarpsN * WN;
  const index_t m0 = index_t(blockIdx.y) * BM, n0 = index_t(blockIdx.x) * BN;
  for (index_t b = blockIdx.z; b < p.batch; b += gridDim.z) {
    const float* A = p.A + b * p.stride_a;
    const float* B = p.B + b * p.stride_b;
    float* C = p.C + b * p.stride_c;
    FragC acc[kFragsM][kFragsN];
#pragma unroll
    for (int i = 0; i < kFragsM; ++i)
#pragma unroll
      for (int j = 0; j < kFragsN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    const auto fetch = [&](index_t k0, int buf) {
      SlabA::template fetch<Tile::kThreads>(slab_a(buf), A, p.lda, m0, k0, p.M, p.K, p.vec_a);
      SlabB::template fetch<Tile::kThreads>(slab_b(buf), B, p.ldb, n0, k0, p.N, p.K, p.vec_b);
      copy_async_commit();
    };
    const auto land = [](int) { copy_async_wait<0>(); };
    const auto compute = [&](int buf) {
#pragma unroll
      for (int k = 0; k < BK; k += 8) {
        // The tensor cores take TF32 operands: round each element to nearest.
        FragA a[kFragsM];
        FragB bf[kFragsN];
#pragma unroll
        for (int i = 0; i < kFragsM; ++i) {
          wmma::load_matrix_sync(a[i], slab_a(buf) + SlabA::offset(wm0 + i * 16, k), SlabA::kLd);
#pragma unroll
          for (int e = 0; e < a[i].num_elements; ++e) a[i].x[e] = wmma::__float_to_tf32(a[i].x[e]);
        }
#pragma unroll
        for (int j = 0; j < kFragsN; ++j) {
          wmma::load_matrix_sync(bf[j], slab_b(buf) + SlabB::offset(wn0 + j * 16, k), SlabB::kLd);
#pragma unroll
          for (int e = 0; e < bf[j].num_elements; ++e)
            bf[j].x[e] = wmma::__float_to_tf32(bf[j].x[e]);
        }
#pragma unroll
        for (int i = 0; i < kFragsM; ++i)
#pragma unroll
          for (int j = 0; j < kFragsN; ++j) wmma::mma_sync(acc[i][j], a[i], bf[j], acc[i][j]);
      }
    };
    pipeline_over_k<BK>(p.K, fetch, land, compute);

    // Each fragment goes through the warp's result tile: lane l then writes
    // row l/2, columns 8*(l%2) .. +7 of it to C as two runs of 4.
    float* result = smem + warp * kResultFloats;
    const int r = lane / 2, c = lane % 2 * 8;
#pragma unroll
    for (int i = 0; i < kFragsM; ++i)
#pragma unroll
      for (int j = 0; j < kFragsN; ++j) {
        wmma::store_matrix_sync(result, acc[i][j], kResultLd, wmma::mem_row_major);
        __syncwarp();
        const index_t m = m0 + wm0 + i * 16 + r, n = n0 + wn0 + j * 16 + c;
        if (m < p.M) {
          store_c_run(p, C, m, n, result + r * kResultLd + c);
          store_c_run(p, C, m, n + 4, result + r * kResultLd + c + 4);
        }
        __syncwarp();  // the next fragment overwrites the result tile
      }
    __syncthreads();  // the next batch's slabs overwrite the result tiles
  }
#endif
}

template <class Tile, bool kTransA, bool kTransB>
void launch(const GemmParams& p, cudaStream_t stream) {
  require(ceil_div(p.M, Tile::BM) <= 65535,
          "sgemm: M = " + std::to_string(p.M) + " needs more than 65535 row tiles");
  const dim3 grid(ceil_div(p.N, Tile::BN), ceil_div(p.M, Tile::BM),
                  static_cast<unsigned>(std::min<index_t>(p.batch, 65535)));
  if constexpr (Tile::kTensorCores)
    PYDL_LAUNCH((sgemm_tf32_kernel<Tile, kTransA, kTransB>), grid, dim3(Tile::kThreads), 0,
                stream)(p);
  else
    PYDL_LAUNCH((sgemm_simt_kernel<Tile, kTransA, kTransB>), grid, dim3(Tile::kThreads), 0,
                stream)(p);
}

template <class Tile>
void launch(bool trans_a, bool trans_b, const GemmParams& p, cudaStream_t stream) {
  if (trans_a)
    trans_b ? launch<Tile, true, true>(p, stream) : launch<Tile, true, false>(p, stream);
  else
    trans_b ? launch<Tile, false, true>(p, stream) : launch<Tile, false, false>(p, stream);
}

// The large tile when it still gives every multiprocessor a block, else the small one.
template <class Large, class Small>
void launch_sized(bool trans_a, bool trans_b, const GemmParams& p, cudaStream_t stream) {
  const index_t large_tiles =
      index_t(ceil_div(p.M, Large::BM)) * ceil_div(p.N, Large::BN) * p.batch;
  if (large_tiles >= multiprocessor_count())
    launch<Large>(trans_a, trans_b, p, stream);
  else
    launch<Small>(trans_a, trans_b, p, stream);
}

bool float4_ok(const float* p, index_t ld, index_t stride) {
  return aligned16(p) && ld % 4 == 0 && stride % 4 == 0;
}

}  // namespace gemm_detail

void sgemm_batched(index_t batch, bool trans_a, bool trans_b, index_t M, index_t N, index_t K,
                   float alpha, const float* A, index_t lda, index_t stride_a, const float* B,
                   index_t ldb, index_t stride_b, float beta, float* C, index_t ldc,
                   index_t stride_c, cudaStream_t stream, bool tf32) {
  using namespace gemm_detail;
  require(batch >= 0 && M >= 0 && N >= 0 && K >= 0, "sgemm: negative dimension");
  if (batch == 0 || M == 0 || N == 0) return;
  const GemmParams p{batch, M, N, K, alpha, beta,
                     A, lda, stride_a, B, ldb, stride_b, C, ldc, stride_c,
                     float4_ok(A, lda, stride_a), float4_ok(B, ldb, stride_b),
                     float4_ok(C, ldc, stride_c)};
  if (tf32 && has_ampere_features())
    launch_sized<LargeTf32Tile, SmallTf32Tile>(trans_a, trans_b, p, stream);
  else
    launch_sized<LargeTile, SmallTile>(trans_a, trans_b, p, stream);
}

void sgemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
           const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
           index_t ldc, cudaStream_t stream, bool tf32) {
  sgemm_batched(1, trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0,
                stream, tf32);
}

}  // namespace pydl::cuda
