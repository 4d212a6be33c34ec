// 2-D convolution as implicit GEMM: the col matrix of im2col never exists in
// global memory; each block gathers its tile of it from the NCHW tensor into
// shared memory. Per group g, with K = Cg_in*KH*KW, P = H_out*W_out and the
// columns of all N images side by side:
//   forward      Y_g  (Cg_out x N*P)  = W_g (Cg_out x K) * col (K x N*P)  (+ bias)
//   grad-weight  dW_g (Cg_out x K)    = dY_g (Cg_out x N*P) * col^T
//   grad-input   dX_g (Cg_in x N*H*W) = Wt_g (Cg_in x Cg_out*KH*KW) * dcol
// col[(c,i,j)][(n,oh,ow)] = X[n][c][oh*sh - ph + i*dh][ow*sw - pw + j*dw] (zero
// outside X); Wt_g[c][(o,i,j)] = W[o][c][i][j]; dcol[(o,i,j)][(n,ih,iw)] =
// dY[n][o][oh][ow] where oh*sh = ih + ph - i*dh (likewise ow) divides exactly and
// lands inside dY, else zero: the transposed convolution gathered, so every dX
// element is written once, with no atomics.
// One tile kernel serves all three: 64x64 outputs per block of 256 threads,
// each a 4x4 micro-tile, the reduction walked in slabs of 16. grad-weight's
// reduction (N*P) is long and its output small, so it is split over blocks
// that atomically add into the zeroed gradient. grad-bias: a block per channel.
#include "conv.cuh"

#include <algorithm>

namespace pydl::cuda {
namespace conv_detail {

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256, kPad = 4;
constexpr int kTM = kBM / (kThreads / (kBN / 4)), kTN = 4;  // 4x4 outputs per thread
static_assert(kTM == 4, "a 16x16 thread grid over a 64x64 tile");

// The convolution's sizes, as the device reads them.
struct Geometry {
  index_t N;
  int C_in, H, W, C_out, KH, KW, sh, sw, ph, pw, dh, dw;
  int Cg_in, Cg_out, H_out, W_out, taps;  // taps = KH*KW
  index_t P, HW;                          // H_out*W_out, H*W

  // col[row][column] of group g: row = (c, i, j), column = (n, oh, ow).
  __device__ __forceinline__ float col(const float* __restrict__ x, int g, index_t row,
                                       index_t column) const {
    const int c = static_cast<int>(row / taps), tap = static_cast<int>(row % taps);
    const index_t n = column / P;
    const int p = static_cast<int>(column - n * P);
    const int ih = p / W_out * sh - ph + tap / KW * dh;
    const int iw = p % W_out * sw - pw + tap % KW * dw;
    if (ih < 0 || ih >= H || iw < 0 || iw >= W) return 0.0f;
    return __ldg(x + ((n * C_in + g * Cg_in + c) * H + ih) * index_t(W) + iw);
  }

  // dcol[row][column] of group g: row = (o, i, j), column = (n, ih, iw).
  __device__ __forceinline__ float dcol(const float* __restrict__ dy, int g, index_t row,
                                        index_t column) const {
    const int o = static_cast<int>(row / taps), tap = static_cast<int>(row % taps);
    const index_t n = column / HW;
    const int q = static_cast<int>(column - n * HW);
    const int oh_s = q / W + ph - tap / KW * dh, ow_s = q % W + pw - tap % KW * dw;
    if (oh_s < 0 || ow_s < 0 || oh_s % sh != 0 || ow_s % sw != 0) return 0.0f;
    const int oh = oh_s / sh, ow = ow_s / sw;
    if (oh >= H_out || ow >= W_out) return 0.0f;
    return __ldg(dy + ((n * C_out + g * Cg_out + o) * H_out + oh) * index_t(W_out) + ow);
  }
};

// Each product below: C (M x N) = A (M x K) * B (K x N) for group g, with
// a(g, m, k), b(g, k, n) the gathered operands and store(g, m, n, value).
// kAKFast / kBKFast: the operand is contiguous in memory along k, so the
// tile's loads should run along k (else along m or n) to coalesce.

struct ForwardProduct {
  static constexpr bool kAKFast = true, kBKFast = false;
  Geometry s;
  index_t M, N, K;  // Cg_out, N*P, Cg_in*taps
  float* y;
  const float *x, *w, *bias;
  __device__ float a(int g, index_t m, index_t k) const {
    return __ldg(w + (g * s.Cg_out + m) * K + k);
  }
  __device__ float b(int g, index_t k, index_t n) const { return s.col(x, g, k, n); }
  __device__ void store(int g, index_t m, index_t n, float v) const {
    const index_t img = n / s.P, c = g * s.Cg_out + m;
    y[(img * s.C_out + c) * s.P + (n - img * s.P)] = bias ? v + __ldg(bias + c) : v;
  }
};

struct InputGradProduct {
  static constexpr bool kAKFast = true, kBKFast = false;
  Geometry s;
  index_t M, N, K;  // Cg_in, N*H*W, Cg_out*taps
  float* dx;
  const float *dy, *w;
  __device__ float a(int g, index_t m, index_t k) const {
    const index_t o = k / s.taps;
    return __ldg(w + ((g * s.Cg_out + o) * s.Cg_in + m) * s.taps + (k - o * s.taps));
  }
  __device__ float b(int g, index_t k, index_t n) const { return s.dcol(dy, g, k, n); }
  __device__ void store(int g, index_t m, index_t n, float v) const {
    const index_t img = n / s.HW;
    dx[(img * s.C_in + g * s.Cg_in + m) * s.HW + (n - img * s.HW)] = v;
  }
};

struct WeightGradProduct {
  static constexpr bool kAKFast = true, kBKFast = true;
  Geometry s;
  index_t M, N, K;  // Cg_out, Cg_in*taps, N*P
  float* dw;
  const float *dy, *x;
  bool accumulate;  // the reduction is split over blocks: add into the zeroed dw
  __device__ float a(int g, index_t m, index_t k) const {
    const index_t img = k / s.P;
    return __ldg(dy + (img * s.C_out + g * s.Cg_out + m) * s.P + (k - img * s.P));
  }
  __device__ float b(int g, index_t k, index_t n) const { return s.col(x, g, n, k); }
  __device__ void store(int g, index_t m, index_t n, float v) const {
    float* out = dw + (g * s.Cg_out + m) * N + n;
    if (accumulate) atomicAdd(out, v);
    else *out = v;
  }
};

// Gathers the kBK x BX slab at (k0, x0) of an operand into dst[k][x], zero
// outside k < k_end, x < extent. load(x, k) reads one element.
template <int BX, bool kKFast, class Load>
__device__ __forceinline__ void gather_slab(float (*dst)[BX + kPad], index_t x0, index_t extent,
                                            index_t k0, index_t k_end, const Load& load) {
  for (int v = threadIdx.x; v < kBK * BX; v += kThreads) {
    const int kk = kKFast ? v % kBK : v / BX, xx = kKFast ? v / kBK : v % BX;
    const index_t k = k0 + kk, x = x0 + xx;
    dst[kk][xx] = k < k_end && x < extent ? load(x, k) : 0.0f;
  }
}

// blockIdx: x the 64-column tile, y the 64-row tile, z = split * groups + g;
// split s reduces k in [s*k_chunk, (s+1)*k_chunk).
template <class Product>
__global__ void __launch_bounds__(kThreads) implicit_gemm_kernel(Product op, int groups,
                                                                 index_t k_chunk) {
  __shared__ __align__(16) float As[kBK][kBM + kPad];
  __shared__ __align__(16) float Bs[kBK][kBN + kPad];
  const int g = blockIdx.z % groups;
  const index_t k_begin = index_t(blockIdx.z / groups) * k_chunk;
  const index_t k_end = op.K - k_begin < k_chunk ? op.K : k_begin + k_chunk;
  const index_t m0 = index_t(blockIdx.y) * kBM, n0 = index_t(blockIdx.x) * kBN;
  const int tx = threadIdx.x % (kBN / kTN), ty = threadIdx.x / (kBN / kTN);
  float acc[kTM][kTN] = {};
  for (index_t k0 = k_begin; k0 < k_end; k0 += kBK) {
    gather_slab<kBM, Product::kAKFast>(As, m0, op.M, k0, k_end,
                                       [&](index_t m, index_t k) { return op.a(g, m, k); });
    gather_slab<kBN, Product::kBKFast>(Bs, n0, op.N, k0, k_end,
                                       [&](index_t n, index_t k) { return op.b(g, k, n); });
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      const float4 a = *reinterpret_cast<const float4*>(&As[kk][ty * kTM]);
      const float4 b = *reinterpret_cast<const float4*>(&Bs[kk][tx * kTN]);
      const float av[kTM] = {a.x, a.y, a.z, a.w}, bv[kTN] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < kTM; ++i)
#pragma unroll
        for (int j = 0; j < kTN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();  // the next slab overwrites As and Bs
  }
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
    const index_t m = m0 + ty * kTM + i;
    if (m >= op.M) break;
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      const index_t n = n0 + tx * kTN + j;
      if (n < op.N) op.store(g, m, n, acc[i][j]);
    }
  }
}

template <class Product>
void launch_product(const Product& op, int groups, index_t splits, index_t k_chunk,
                    cudaStream_t stream) {
  if (op.M == 0 || op.N == 0) return;
  require(ceil_div(op.M, kBM) <= 65535 && groups * splits <= 65535,
          "conv2d: too many channel tiles or groups for one launch");
  const dim3 grid(ceil_div(op.N, kBN), ceil_div(op.M, kBM), static_cast<unsigned>(groups * splits));
  PYDL_LAUNCH(implicit_gemm_kernel<Product>, grid, dim3(kThreads), 0, stream)(op, groups, k_chunk);
}

Geometry geometry(const Conv2dShape& s) {
  check_conv2d(s);
  Geometry q;
  q.N = s.N;
  q.C_in = static_cast<int>(s.C_in), q.H = static_cast<int>(s.H), q.W = static_cast<int>(s.W);
  q.C_out = static_cast<int>(s.C_out), q.KH = static_cast<int>(s.KH), q.KW = static_cast<int>(s.KW);
  q.sh = static_cast<int>(s.stride_h), q.sw = static_cast<int>(s.stride_w);
  q.ph = static_cast<int>(s.pad_h), q.pw = static_cast<int>(s.pad_w);
  q.dh = static_cast<int>(s.dilation_h), q.dw = static_cast<int>(s.dilation_w);
  q.Cg_in = static_cast<int>(s.C_in / s.groups), q.Cg_out = static_cast<int>(s.C_out / s.groups);
  q.H_out = static_cast<int>(s.H_out()), q.W_out = static_cast<int>(s.W_out());
  q.taps = q.KH * q.KW;
  q.P = index_t(q.H_out) * q.W_out;
  q.HW = s.H * s.W;
  return q;
}

// ---- grad-bias -----------------------------------------------------------------

constexpr int kBiasThreads = 256;

// grad_bias[c] = sum over n, p of dy[n][c][p]; one block per channel c.
__global__ void __launch_bounds__(kBiasThreads)
bias_grad_kernel(float* __restrict__ grad_bias, const float* __restrict__ dy, index_t N,
                 index_t C, index_t P) {
  const index_t c = blockIdx.x;
  float sum = 0.0f;
  for (index_t n = 0; n < N; ++n) {
    const float* plane = dy + (n * C + c) * P;
    for (index_t p = threadIdx.x; p < P; p += kBiasThreads) sum += __ldg(plane + p);
  }
  sum = block_reduce(sum, SumOp{}, 0.0f);
  if (threadIdx.x == 0) grad_bias[c] = sum;
}

}  // namespace conv_detail

using namespace conv_detail;

void conv2d_forward(float* out, const float* in, const float* weight, const float* bias,
                    const Conv2dShape& s, cudaStream_t stream) {
  const Geometry q = geometry(s);
  const ForwardProduct op{q, q.Cg_out, s.N * q.P, index_t(q.Cg_in) * q.taps, out, in, weight, bias};
  launch_product(op, static_cast<int>(s.groups), 1, op.K, stream);
}

void conv2d_backward_input(float* grad_in, const float* grad_out, const float* weight,
                           const Conv2dShape& s, cudaStream_t stream) {
  const Geometry q = geometry(s);
  const InputGradProduct op{q, q.Cg_in, s.N * q.HW, index_t(q.Cg_out) * q.taps, grad_in,
                            grad_out, weight};
  launch_product(op, static_cast<int>(s.groups), 1, op.K, stream);
}

void conv2d_backward_weight(float* grad_weight, const float* grad_out, const float* in,
                            const Conv2dShape& s, cudaStream_t stream) {
  const Geometry q = geometry(s);
  WeightGradProduct op{q, q.Cg_out, index_t(q.Cg_in) * q.taps, s.N * q.P, grad_weight,
                       grad_out, in, false};
  if (op.M == 0 || op.N == 0) return;
  if (op.K == 0) {  // an empty batch
    PYDL_CUDA_CHECK(cudaMemsetAsync(grad_weight, 0, sizeof(float) * s.C_out * op.N, stream));
    return;
  }
  // Split the reduction until the grid gives every multiprocessor about four
  // blocks, keeping at least 16 slabs of it per block.
  const index_t tiles = index_t(ceil_div(op.M, kBM)) * ceil_div(op.N, kBN) * s.groups;
  const index_t most = std::max<index_t>(1, std::min<index_t>(ceil_div(op.K, 16 * kBK),
                                                              65535 / s.groups));
  index_t splits = std::clamp<index_t>(4 * multiprocessor_count() / tiles, 1, most);
  const index_t k_chunk = (ceil_div(op.K, splits) + kBK - 1) / kBK * kBK;
  splits = std::max<index_t>(1, ceil_div(op.K, k_chunk));
  op.accumulate = splits > 1;
  if (op.accumulate)
    PYDL_CUDA_CHECK(cudaMemsetAsync(grad_weight, 0, sizeof(float) * s.C_out * op.N, stream));
  launch_product(op, static_cast<int>(s.groups), splits, std::max<index_t>(k_chunk, 1), stream);
}

void conv2d_backward_bias(float* grad_bias, const float* grad_out, const Conv2dShape& s,
                          cudaStream_t stream) {
  const Geometry q = geometry(s);
  if (s.C_out == 0) return;
  PYDL_LAUNCH(bias_grad_kernel, dim3(static_cast<unsigned>(s.C_out)), dim3(kBiasThreads), 0,
              stream)(grad_bias, grad_out, s.N, s.C_out, q.P);
}

}  // namespace pydl::cuda
