// 2-D convolution as im2col + GEMM, tiled by blocks of output rows.
//
// Per image n and group g, with K = C_in/groups * KH * KW and P = H_out * W_out:
//   forward       Y_g (C_out/g x P) = W_g (C_out/g x K) * col (K x P) + bias
//   grad-input    dcol (K x P) = W_g^T * dY_g, then col2im adds dcol into dX
//   grad-weight   dW_g += dY_g * col^T          (beta = 1 over images and tiles)
// col[(c*KH + i)*KW + j][oh*W_out + ow] = X[c][oh*sh - ph + i*dh][ow*sw - pw + j*dw]
// (zero outside X). The col buffer never holds a whole image when that is large:
// it covers a block of output rows sized to kColTileFloats. A 1x1 kernel with
// stride 1 and no padding needs no col at all: col is X itself. Images with
// small output planes go several to a tile, their col matrices side by side,
// so one GEMM gets N = images * P columns instead of a handful.
//
// 3x3 stride-1 convolutions with enough channels take the Winograd path
// instead (winograd.cpp; winograd_suits says where) for forward and grad-input.
//
// Threads: with at least as many tiles as threads, each thread takes whole
// tiles and runs its GEMMs alone (the GEMM's own parallel region is nested,
// hence inactive); otherwise tiles run in order and each GEMM uses the threads.
// The weight gradient sums over tiles in an order fixed by the shape alone
// (kWeightGradSlots), so it is the same bits on any number of threads.
#include "conv.h"

#include <algorithm>
#include <cstring>

#include "bf16.h"
#include "gemm.h"
#include "parallel.h"

namespace pydl {

namespace {

// 512 KiB of col per tile: it stays in L2/L3 beside the GEMM's packed blocks,
// while a tile of a few output rows still gives the GEMM a wide N.
constexpr index_t kColTileFloats = index_t(1) << 17;
// The GEMM of every product below: float32, or bfloat16 operands under autocast.
void conv_gemm(const Conv2dShape& s, bool trans_a, bool trans_b, index_t M, index_t N, index_t K,
               const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
               index_t ldc) {
  (s.bf16 ? gemm_bf16 : sgemm)(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

// Below this many flops per thread another thread costs more than it saves.
constexpr double kFlopsPerThread = 2e6;

// Images whose output plane is smaller than this share one GEMM (their col
// matrices side by side), so the GEMM's N is not a handful of columns.
constexpr index_t kSmallPlane = 256;

// The weight gradient's tiles are sized as for this many threads and split
// into at most this many slots of consecutive tiles; each slot sums its tiles
// in order, and the slots' sums are added in slot order. Threads take whole
// slots, so the order of every addition is independent of the thread count.
constexpr int kWeightGradSlots = 8;

struct Plan {
  index_t Cg_in, Cg_out;  // channels per group
  index_t H_out, W_out, P, HW;
  index_t K;              // rows of col: Cg_in * KH * KW
  bool col_is_input;      // 1x1, stride 1, no padding, one image per tile
  index_t tile_rows;      // output rows per col tile (all of them when images > 1)
  index_t images;         // images per tile
  index_t N_total;        // images in the batch
  int threads;            // threads taking whole tiles; 1: tiles in order, GEMMs threaded
  index_t tiles() const { return (N_total + images - 1) / images; }
};

// split > 0 (the weight gradient): tiles sized as for `split` threads and at
// most `split` threads taking them, so the tiling does not depend on the threads.
Plan make_plan(const Conv2dShape& s, int split = 0) {
  Plan p;
  p.Cg_in = s.C_in / s.groups;
  p.Cg_out = s.C_out / s.groups;
  p.H_out = s.H_out();
  p.W_out = s.W_out();
  p.P = p.H_out * p.W_out;
  p.HW = s.H * s.W;
  p.K = p.Cg_in * s.KH * s.KW;
  p.N_total = s.N;
  const double flops = 2.0 * s.C_out * p.K * p.P * s.N;
  const int nt = threads_for(flops, kFlopsPerThread);
  // Small planes: as many images per tile as fit the col budget, but no fewer
  // tiles than threads.
  const index_t fit = std::max<index_t>(1, kColTileFloats / std::max<index_t>(1, p.K * p.P));
  const index_t per = split > 0 ? split : nt;
  p.images = p.P < kSmallPlane ? std::clamp<index_t>((s.N + per - 1) / per, 1, fit) : 1;
  p.col_is_input = p.images == 1 && s.KH == 1 && s.KW == 1 && s.stride_h == 1 &&
                   s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0;
  p.tile_rows = p.col_is_input || p.images > 1
                    ? p.H_out
                    : std::clamp<index_t>(kColTileFloats / std::max<index_t>(1, p.K * p.W_out), 1,
                                          std::max<index_t>(1, p.H_out));
  p.threads = split > 0 ? static_cast<int>(std::min<index_t>(nt, std::min<index_t>(split, p.tiles())))
                        : (nt <= p.tiles() ? nt : 1);
  return p;
}

// The output columns ow whose input column ow*stride + offset lies in [0, W):
// [lo, hi), so the copy loops below need no bounds checks.
void valid_columns(index_t offset, index_t stride, index_t W, index_t W_out, index_t& lo,
                   index_t& hi) {
  lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  hi = W - offset <= 0 ? 0 : (W - offset + stride - 1) / stride;
  hi = std::clamp<index_t>(hi, 0, W_out);
  lo = std::min(lo, hi);
}

}  // namespace

// im2col_rows (conv.h), for float and for quantized (uint8) planes.
template <class T>
void im2col_rows(T* col, index_t ld, const T* x, const Conv2dShape& s, index_t oh0, index_t oh1,
                 T pad) {
  const index_t Cg_in = s.C_in / s.groups, W_out = s.W_out();
  for (index_t c = 0; c < Cg_in; ++c)
    for (index_t i = 0; i < s.KH; ++i)
      for (index_t j = 0; j < s.KW; ++j) {
        T* dst = col + ((c * s.KH + i) * s.KW + j) * ld;
        const index_t offset = j * s.dilation_w - s.pad_w;
        index_t lo, hi;
        valid_columns(offset, s.stride_w, s.W, W_out, lo, hi);
        for (index_t oh = oh0; oh < oh1; ++oh, dst += W_out) {
          const index_t ih = oh * s.stride_h - s.pad_h + i * s.dilation_h;
          if (ih < 0 || ih >= s.H) {
            std::fill(dst, dst + W_out, pad);
            continue;
          }
          const T* src = x + (c * s.H + ih) * s.W + offset;
          // Rows are short (W_out bytes of uint8 for MNIST-sized planes): the
          // empty fills and short copies stay out of memset/memcpy calls.
          for (index_t ow = 0; ow < lo; ++ow) dst[ow] = pad;
          if (s.stride_w == 1 && hi - lo >= 64)
            std::memcpy(dst + lo, src + lo, sizeof(T) * (hi - lo));
          else
            for (index_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * s.stride_w];
          for (index_t ow = hi; ow < W_out; ++ow) dst[ow] = pad;
        }
      }
}
template void im2col_rows<float>(float*, index_t, const float*, const Conv2dShape&, index_t,
                                 index_t, float);
template void im2col_rows<std::uint8_t>(std::uint8_t*, index_t, const std::uint8_t*,
                                        const Conv2dShape&, index_t, index_t, std::uint8_t);

namespace {

// The adjoint of im2col_rows: dx[...] += col[...] for every element it copied.
void col2im_rows(float* dx, const float* col, index_t ld, const Conv2dShape& s, const Plan& p,
                 index_t oh0, index_t oh1) {
  for (index_t c = 0; c < p.Cg_in; ++c)
    for (index_t i = 0; i < s.KH; ++i)
      for (index_t j = 0; j < s.KW; ++j) {
        const float* src = col + ((c * s.KH + i) * s.KW + j) * ld;
        const index_t offset = j * s.dilation_w - s.pad_w;
        index_t lo, hi;
        valid_columns(offset, s.stride_w, s.W, p.W_out, lo, hi);
        for (index_t oh = oh0; oh < oh1; ++oh, src += p.W_out) {
          const index_t ih = oh * s.stride_h - s.pad_h + i * s.dilation_h;
          if (ih < 0 || ih >= s.H) continue;
          float* dst = dx + (c * s.H + ih) * s.W + offset;
          for (index_t ow = lo; ow < hi; ++ow) dst[ow * s.stride_w] += src[ow];
        }
      }
}

// Per-thread buffers: col (K x the tile's columns) and, for multi-image tiles,
// the GEMM's other operand gathered from or scattered to NCHW (C_out/g x columns).
struct Scratch {
  Scratch(const Plan& p)
      : col_size(p.col_is_input ? 0 : std::size_t(p.K) * p.images * p.tile_rows * p.W_out),
        gathered_size(p.images > 1 ? std::size_t(p.Cg_out) * p.images * p.P : 0),
        buffer(std::max<std::size_t>(1, (col_size + gathered_size) * p.threads)) {}
  float* col(int t) const { return buffer.get() + (col_size + gathered_size) * t; }
  float* gathered(int t) const { return col(t) + col_size; }
  std::size_t col_size, gathered_size;
  Workspace<float> buffer;
};

// The B operand of a one-image tile: the rows [oh0, oh1) of col, built in
// `col` unless col is the input itself. Returns the pointer and sets its row stride.
const float* col_tile(float* col, const float* x, const Conv2dShape& s, const Plan& p,
                      index_t oh0, index_t oh1, index_t& ld) {
  if (p.col_is_input) {
    ld = p.P;
    return x + oh0 * p.W_out;
  }
  ld = (oh1 - oh0) * p.W_out;
  im2col_rows(col, ld, x, s, oh0, oh1, 0.0f);
  return col;
}

// col for images [n0, n1) of group g side by side: image i's columns start at i*P.
void im2col_images(float* col, const float* in, const Conv2dShape& s, const Plan& p, index_t n0,
                   index_t n1, index_t g) {
  for (index_t n = n0; n < n1; ++n)
    im2col_rows(col + (n - n0) * p.P, (n1 - n0) * p.P, in + (n * s.C_in + g * p.Cg_in) * p.HW,
                s, 0, p.H_out, 0.0f);
}

// dY of images [n0, n1), group g, as one (C_out/g x (n1-n0)*P) matrix.
void gather_grad(float* dst, const float* grad_out, const Conv2dShape& s, const Plan& p,
                 index_t n0, index_t n1, index_t g) {
  const index_t ld = (n1 - n0) * p.P;
  for (index_t n = n0; n < n1; ++n)
    for (index_t co = 0; co < p.Cg_out; ++co)
      std::memcpy(dst + co * ld + (n - n0) * p.P, grad_out + (n * s.C_out + g * p.Cg_out + co) * p.P,
                  sizeof(float) * p.P);
}

// Runs body(n0, n1, t) for every tile of images [n0, n1), t being the running
// thread's index (to pick its own buffers).
template <class Body>
void for_each_tile(const Plan& p, const Body& body) {
  const index_t tiles = p.tiles();
  auto run = [&](index_t tile, int t) {
    body(tile * p.images, std::min(p.N_total, (tile + 1) * p.images), t);
  };
  if (p.threads <= 1) {
    for (index_t tile = 0; tile < tiles; ++tile) run(tile, 0);
    return;
  }
#ifdef _OPENMP
  // Dynamic: a thread whose core is busy with another process takes fewer tiles.
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.threads)
  for (index_t tile = 0; tile < tiles; ++tile) run(tile, omp_get_thread_num());
#else
  for (index_t tile = 0; tile < tiles; ++tile) run(tile, 0);
#endif
}

}  // namespace

void conv2d_forward(float* out, const float* in, const float* weight, const float* bias,
                    const Conv2dShape& s, const float* winograd_weights) {
  check_conv2d(s);
  if (conv2d_takes_winograd(s, false))
    return winograd_forward(out, in, weight, bias, s, winograd_weights);
  const Plan p = make_plan(s);
  const Scratch scratch(p);
  for_each_tile(p, [&](index_t n0, index_t n1, int t) {
    float* col = scratch.col(t);
    for (index_t g = 0; g < s.groups; ++g) {
      const float* w = weight + g * p.Cg_out * p.K;
      const float* b = bias ? bias + g * p.Cg_out : nullptr;
      if (n1 - n0 > 1) {  // Y (C_out/g x images*P) = W * col, then scattered to NCHW + bias
        const index_t ld = (n1 - n0) * p.P;
        float* y_all = scratch.gathered(t);
        im2col_images(col, in, s, p, n0, n1, g);
        conv_gemm(s, false, false, p.Cg_out, ld, p.K, w, p.K, col, ld, 0.0f, y_all, ld);
        for (index_t n = n0; n < n1; ++n)
          for (index_t co = 0; co < p.Cg_out; ++co) {
            const float* src = y_all + co * ld + (n - n0) * p.P;
            float* dst = out + (n * s.C_out + g * p.Cg_out + co) * p.P;
            const float shift = b ? b[co] : 0.0f;
            for (index_t i = 0; i < p.P; ++i) dst[i] = src[i] + shift;
          }
        continue;
      }
      const float* x = in + (n0 * s.C_in + g * p.Cg_in) * p.HW;
      float* y = out + (n0 * s.C_out + g * p.Cg_out) * p.P;
      for (index_t oh0 = 0; oh0 < p.H_out; oh0 += p.tile_rows) {
        const index_t oh1 = std::min(p.H_out, oh0 + p.tile_rows);
        const index_t width = (oh1 - oh0) * p.W_out;
        float* y_tile = y + oh0 * p.W_out;
        if (b)  // Y = bias, then the GEMM adds W*col (beta = 1) while the tile is in cache
          for (index_t co = 0; co < p.Cg_out; ++co)
            std::fill(y_tile + co * p.P, y_tile + co * p.P + width, b[co]);
        index_t ld;
        const float* cols = col_tile(col, x, s, p, oh0, oh1, ld);
        conv_gemm(s, false, false, p.Cg_out, width, p.K, w, p.K, cols, ld, b ? 1.0f : 0.0f,
              y_tile, p.P);
      }
    }
  });
}

void conv2d_backward_input(float* grad_in, const float* grad_out, const float* weight,
                           const Conv2dShape& s, const float* winograd_weights) {
  check_conv2d(s);
  if (conv2d_takes_winograd(s, true))
    return winograd_backward_input(grad_in, grad_out, weight, s, winograd_weights);
  const Plan p = make_plan(s);
  const Scratch scratch(p);
  for_each_tile(p, [&](index_t n0, index_t n1, int t) {
    float* col = scratch.col(t);
    for (index_t g = 0; g < s.groups; ++g) {
      const float* w = weight + g * p.Cg_out * p.K;
      if (n1 - n0 > 1) {  // dcol (K x images*P) = W^T dY, then col2im image by image
        const index_t ld = (n1 - n0) * p.P;
        float* dy_all = scratch.gathered(t);
        gather_grad(dy_all, grad_out, s, p, n0, n1, g);
        conv_gemm(s, true, false, p.K, ld, p.Cg_out, w, p.K, dy_all, ld, 0.0f, col, ld);
        for (index_t n = n0; n < n1; ++n) {
          float* dx = grad_in + (n * s.C_in + g * p.Cg_in) * p.HW;
          std::fill(dx, dx + p.Cg_in * p.HW, 0.0f);
          col2im_rows(dx, col + (n - n0) * p.P, ld, s, p, 0, p.H_out);
        }
        continue;
      }
      float* dx = grad_in + (n0 * s.C_in + g * p.Cg_in) * p.HW;
      const float* dy = grad_out + (n0 * s.C_out + g * p.Cg_out) * p.P;
      if (p.col_is_input) {  // dX_g = W_g^T dY_g, written straight into grad_in
        conv_gemm(s, true, false, p.Cg_in, p.P, p.Cg_out, w, p.K, dy, p.P, 0.0f, dx, p.HW);
        continue;
      }
      std::fill(dx, dx + p.Cg_in * p.HW, 0.0f);
      for (index_t oh0 = 0; oh0 < p.H_out; oh0 += p.tile_rows) {
        const index_t oh1 = std::min(p.H_out, oh0 + p.tile_rows);
        const index_t width = (oh1 - oh0) * p.W_out;
        conv_gemm(s, true, false, p.K, width, p.Cg_out, w, p.K, dy + oh0 * p.W_out, p.P, 0.0f,
              col, width);
        col2im_rows(dx, col, width, s, p, oh0, oh1);
      }
    }
  });
}

void conv2d_backward_weight(float* grad_weight, const float* grad_out, const float* in,
                            const Conv2dShape& s) {
  check_conv2d(s);
  const Plan p = make_plan(s, kWeightGradSlots);
  const Scratch scratch(p);
  const std::size_t w_size = std::size_t(s.C_out) * p.K;
  const index_t tiles = p.tiles();
  const int slots = static_cast<int>(std::min<index_t>(kWeightGradSlots, tiles));
  // Slot k sums tiles [k*tiles/slots, (k+1)*tiles/slots) into its own dW
  // (slot 0 into grad_weight); the slots' sums are added in order at the end.
  Workspace<float> partial(std::max<std::size_t>(1, w_size * std::max(slots - 1, 0)));
  auto slot_sum = [&](int k) { return k == 0 ? grad_weight : partial.get() + w_size * (k - 1); };
  auto tile_into = [&](index_t n0, index_t n1, int t, float* dw_all) {
    float* col = scratch.col(t);
    for (index_t g = 0; g < s.groups; ++g) {
      float* dw = dw_all + g * p.Cg_out * p.K;
      if (n1 - n0 > 1) {  // dW += dY (C_out/g x images*P) * col^T
        const index_t ld = (n1 - n0) * p.P;
        float* dy_all = scratch.gathered(t);
        gather_grad(dy_all, grad_out, s, p, n0, n1, g);
        im2col_images(col, in, s, p, n0, n1, g);
        conv_gemm(s, false, true, p.Cg_out, p.K, ld, dy_all, ld, col, ld, 1.0f, dw, p.K);
        continue;
      }
      const float* x = in + (n0 * s.C_in + g * p.Cg_in) * p.HW;
      const float* dy = grad_out + (n0 * s.C_out + g * p.Cg_out) * p.P;
      for (index_t oh0 = 0; oh0 < p.H_out; oh0 += p.tile_rows) {
        const index_t oh1 = std::min(p.H_out, oh0 + p.tile_rows);
        index_t ld;
        const float* cols = col_tile(col, x, s, p, oh0, oh1, ld);
        conv_gemm(s, false, true, p.Cg_out, p.K, (oh1 - oh0) * p.W_out, dy + oh0 * p.W_out, p.P,
              cols, ld, 1.0f, dw, p.K);
      }
    }
  };
  auto run_slot = [&](int k, int t) {
    float* dw_all = slot_sum(k);
    std::fill(dw_all, dw_all + w_size, 0.0f);
    for (index_t tile = k * tiles / slots; tile < (k + 1) * tiles / slots; ++tile)
      tile_into(tile * p.images, std::min(p.N_total, (tile + 1) * p.images), t, dw_all);
  };
  if (slots == 0) std::fill(grad_weight, grad_weight + w_size, 0.0f);  // an empty batch
  if (p.threads <= 1) {
    for (int k = 0; k < slots; ++k) run_slot(k, 0);
  } else {
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.threads)
    for (int k = 0; k < slots; ++k) run_slot(k, omp_get_thread_num());
#else
    for (int k = 0; k < slots; ++k) run_slot(k, 0);
#endif
  }
  for (int k = 1; k < slots; ++k) {
    const float* src = slot_sum(k);
    for (std::size_t i = 0; i < w_size; ++i) grad_weight[i] += src[i];
  }
}

void conv2d_backward_bias(float* grad_bias, const float* grad_out, const Conv2dShape& s) {
  check_conv2d(s);
  const Plan p = make_plan(s);
  // d bias[c] = sum over n and the output plane of dY[n][c].
  parallel_for(s.C_out, threads_for(double(s.N) * s.C_out * p.P, 1 << 16), 1,
               [&](index_t c0, index_t c1) {
                 for (index_t c = c0; c < c1; ++c) {
                   double sum = 0.0;
                   for (index_t n = 0; n < s.N; ++n) {
                     const float* dy = grad_out + (n * s.C_out + c) * p.P;
                     float partial_sum = 0.0f;
                     for (index_t i = 0; i < p.P; ++i) partial_sum += dy[i];
                     sum += partial_sum;
                   }
                   grad_bias[c] = static_cast<float>(sum);
                 }
               });
}

}  // namespace pydl
