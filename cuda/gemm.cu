// SIMT SGEMM. Each block computes a BM x BN tile of C = alpha*op(A)*op(B) + beta*C,
// walking K in slabs of BK: the slab of op(A) (BM x BK) and of op(B) (BK x BN)
// are staged in shared memory k-major (As[k][m], Bs[k][n]), then each thread
// accumulates a TM x TN micro-tile in registers, acc[i][j] += As[k][m_i] * Bs[k][n_j],
// from float4 reads of As and Bs. A thread's rows are TM/4 runs of 4 spaced
// BM/(TM/4) apart (columns likewise), so the float4 reads of a warp spread over
// the banks instead of piling onto a few.
// Batches run over gridDim.z; edge tiles load zeros and store under bounds.
#include "gemm.cuh"

#include <algorithm>

namespace pydl::cuda {
namespace gemm_detail {

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct SimtTile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int kThreads = (BM / TM) * (BN / TN);
  static constexpr int kPad = 4;  // shared row padding; keeps rows 16-byte aligned
  static_assert(TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "float4 runs");
};
// 256 threads each; the large tile reuses each loaded value 8 times per thread
// but needs enough output tiles to fill the device.
using LargeTile = SimtTile<128, 128, 8, 8, 8>;
using SmallTile = SimtTile<64, 64, 8, 4, 4>;

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

// Copies the BK x BX slab of op(X) at (k0, x0) into dst[k * (BX + kPad) + x],
// with zeros outside op(X)'s K x extent. X is stored k-contiguous (element
// (k, x) at src[x*ld + k]) or x-contiguous (at src[k*ld + x]); either way a
// thread reads 4 consecutive elements along the contiguous axis, as one float4
// when `vec` and the run lies inside the matrix.
template <int BK, int BX, int kThreads, int kPad, bool kKContiguous>
__device__ __forceinline__ void load_slab(float* dst, const float* __restrict__ src, index_t ld,
                                          index_t x0, index_t k0, index_t extent, index_t K,
                                          bool vec) {
  constexpr int kRow = BX + kPad;
  constexpr int kRunsPerLine = (kKContiguous ? BK : BX) / 4;
  const index_t outer_extent = kKContiguous ? extent : K;
  const index_t inner_extent = kKContiguous ? K : extent;
  for (int v = threadIdx.x; v < BK * BX / 4; v += kThreads) {
    const int outer = v / kRunsPerLine, inner = v % kRunsPerLine * 4;
    const index_t g_outer = (kKContiguous ? x0 : k0) + outer;
    const index_t g_inner = (kKContiguous ? k0 : x0) + inner;
    float e[4];
    if (vec && g_outer < outer_extent && g_inner + 3 < inner_extent) {
      const float4 q = __ldg(reinterpret_cast<const float4*>(src + g_outer * ld + g_inner));
      e[0] = q.x, e[1] = q.y, e[2] = q.z, e[3] = q.w;
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        e[i] = g_outer < outer_extent && g_inner + i < inner_extent
                   ? __ldg(src + g_outer * ld + g_inner + i) : 0.0f;
    }
    if constexpr (kKContiguous) {
#pragma unroll
      for (int i = 0; i < 4; ++i) dst[(inner + i) * kRow + outer] = e[i];
    } else {
      *reinterpret_cast<float4*>(dst + outer * kRow + inner) = make_float4(e[0], e[1], e[2], e[3]);
    }
  }
}

template <class Tile, bool kTransA, bool kTransB>
__global__ void __launch_bounds__(Tile::kThreads) sgemm_simt_kernel(GemmParams p) {
  constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, TM = Tile::TM, TN = Tile::TN;
  constexpr int kRowA = BM + Tile::kPad, kRowB = BN + Tile::kPad;
  constexpr int kRunStrideM = BM / (TM / 4), kRunStrideN = BN / (TN / 4);
  __shared__ __align__(16) float As[BK * kRowA];
  __shared__ __align__(16) float Bs[BK * kRowB];

  const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
  const index_t m0 = index_t(blockIdx.y) * BM, n0 = index_t(blockIdx.x) * BN;
  for (index_t b = blockIdx.z; b < p.batch; b += gridDim.z) {
    const float* A = p.A + b * p.stride_a;
    const float* B = p.B + b * p.stride_b;
    float* C = p.C + b * p.stride_c;
    float acc[TM][TN] = {};
    for (index_t k0 = 0; k0 < p.K; k0 += BK) {
      // A stored (M,K) is k-contiguous, stored (K,M) (trans_a) m-contiguous;
      // B stored (K,N) is n-contiguous, stored (N,K) (trans_b) k-contiguous.
      load_slab<BK, BM, Tile::kThreads, Tile::kPad, !kTransA>(As, A, p.lda, m0, k0, p.M, p.K, p.vec_a);
      load_slab<BK, BN, Tile::kThreads, Tile::kPad, kTransB>(Bs, B, p.ldb, n0, k0, p.N, p.K, p.vec_b);
      __syncthreads();
#pragma unroll
      for (int k = 0; k < BK; ++k) {
        float a[TM], bv[TN];
#pragma unroll
        for (int r = 0; r < TM / 4; ++r) {
          const float4 q = *reinterpret_cast<const float4*>(As + k * kRowA + r * kRunStrideM + ty * 4);
          a[r * 4] = q.x, a[r * 4 + 1] = q.y, a[r * 4 + 2] = q.z, a[r * 4 + 3] = q.w;
        }
#pragma unroll
        for (int r = 0; r < TN / 4; ++r) {
          const float4 q = *reinterpret_cast<const float4*>(Bs + k * kRowB + r * kRunStrideN + tx * 4);
          bv[r * 4] = q.x, bv[r * 4 + 1] = q.y, bv[r * 4 + 2] = q.z, bv[r * 4 + 3] = q.w;
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], bv[j], acc[i][j]);
      }
      __syncthreads();  // the next slab overwrites As and Bs
    }

    // C = alpha * acc + beta * C, where beta == 0 never reads C.
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const index_t m = m0 + (i / 4) * kRunStrideM + ty * 4 + i % 4;
      if (m >= p.M) continue;
#pragma unroll
      for (int r = 0; r < TN / 4; ++r) {
        const index_t n = n0 + r * kRunStrideN + tx * 4;
        float* c = C + m * p.ldc + n;
        float out[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) out[j] = p.alpha * acc[i][r * 4 + j];
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
    }
  }
}

template <class Tile, bool kTransA, bool kTransB>
void launch_simt(const GemmParams& p, cudaStream_t stream) {
  require(ceil_div(p.M, Tile::BM) <= 65535,
          "sgemm: M = " + std::to_string(p.M) + " needs more than 65535 row tiles");
  const dim3 grid(ceil_div(p.N, Tile::BN), ceil_div(p.M, Tile::BM),
                  static_cast<unsigned>(std::min<index_t>(p.batch, 65535)));
  PYDL_LAUNCH((sgemm_simt_kernel<Tile, kTransA, kTransB>), grid, dim3(Tile::kThreads), 0,
              stream)(p);
}

template <class Tile>
void launch_simt(bool trans_a, bool trans_b, const GemmParams& p, cudaStream_t stream) {
  if (trans_a)
    trans_b ? launch_simt<Tile, true, true>(p, stream) : launch_simt<Tile, true, false>(p, stream);
  else
    trans_b ? launch_simt<Tile, false, true>(p, stream) : launch_simt<Tile, false, false>(p, stream);
}

bool float4_ok(const float* p, index_t ld, index_t stride) {
  return aligned16(p) && ld % 4 == 0 && stride % 4 == 0;
}

}  // namespace gemm_detail

void sgemm_batched(index_t batch, bool trans_a, bool trans_b, index_t M, index_t N, index_t K,
                   float alpha, const float* A, index_t lda, index_t stride_a, const float* B,
                   index_t ldb, index_t stride_b, float beta, float* C, index_t ldc,
                   index_t stride_c, cudaStream_t stream) {
  using namespace gemm_detail;
  require(batch >= 0 && M >= 0 && N >= 0 && K >= 0, "sgemm: negative dimension");
  if (batch == 0 || M == 0 || N == 0) return;
  const GemmParams p{batch, M, N, K, alpha, beta,
                     A, lda, stride_a, B, ldb, stride_b, C, ldc, stride_c,
                     float4_ok(A, lda, stride_a), float4_ok(B, ldb, stride_b),
                     float4_ok(C, ldc, stride_c)};
  // The place for a tensor-core (TF32) path: ahead of the SIMT kernels, for
  // devices and shapes where it pays. Among SIMT tiles, the large one when it
  // still gives every multiprocessor a block, else the small one.
  const index_t large_tiles = index_t(ceil_div(M, LargeTile::BM)) * ceil_div(N, LargeTile::BN) * batch;
  if (large_tiles >= multiprocessor_count())
    launch_simt<LargeTile>(trans_a, trans_b, p, stream);
  else
    launch_simt<SmallTile>(trans_a, trans_b, p, stream);
}

void sgemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
           const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
           index_t ldc, cudaStream_t stream) {
  sgemm_batched(1, trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0,
                stream);
}

}  // namespace pydl::cuda
