// 2-D max and average pooling. Threads split the N*C planes.
//
// Max pooling on x86 with undilated columns and a column stride of 1 or 2 (the
// common 2x2/2 and 3x3/1,2 pools) runs over output columns in vector lanes, a
// stride-2 row's taps split out of two vectors by even and odd lanes. Every
// other geometry (and the portable build) takes the scalar path, where each
// output element reads its window with the out-of-range rows and columns
// clipped off up front, so the inner loops carry no bounds checks. Both keep
// PyTorch's rule: scanning the window row-major, take v when v > best or v is
// NaN (so the last NaN wins, else the first maximum).
#include "pool.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "parallel.h"
#include "simd_lanes.h"
#include "simd_math.h"

namespace pydl {

namespace {

// Below this many input elements per thread another thread costs more than it saves.
constexpr double kElementsPerThread = 1 << 15;

// The kernel taps [lo, hi) whose input position start + tap*dilation lies in [0, size).
void valid_taps(index_t start, index_t k, index_t dilation, index_t size, index_t& lo,
                index_t& hi) {
  lo = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
  hi = size - start <= 0 ? 0 : std::min(k, (size - start + dilation - 1) / dilation);
  lo = std::min(lo, hi);
}

// valid_taps for every output position along one axis, computed once per call
// (the divisions would otherwise cost more than a small window's compares).
struct TapRanges {
  std::vector<index_t> lo, hi;
  TapRanges(index_t out, index_t k, index_t stride, index_t pad, index_t dilation, index_t size)
      : lo(out), hi(out) {
    for (index_t o = 0; o < out; ++o) valid_taps(o * stride - pad, k, dilation, size, lo[o], hi[o]);
  }
};

template <class Body>
void for_each_plane(const Pool2dShape& s, const Body& body) {
  parallel_for(s.N * s.C, threads_for(double(s.N) * s.C * s.H * s.W, kElementsPerThread), 1,
               [&](index_t p0, index_t p1) {
                 for (index_t p = p0; p < p1; ++p) body(p);
               });
}

// The average pool's window for output (oh, ow): rows [h0, h1), columns
// [w0, w1) of the input, and the divisor.
struct AvgWindow {
  index_t h0, h1, w0, w1;
  float divisor;
};

AvgWindow avg_window(const Pool2dShape& s, index_t oh, index_t ow, bool count_include_pad) {
  AvgWindow w;
  w.h0 = oh * s.stride_h - s.pad_h;
  w.w0 = ow * s.stride_w - s.pad_w;
  w.h1 = std::min(w.h0 + s.KH, s.H + s.pad_h);
  w.w1 = std::min(w.w0 + s.KW, s.W + s.pad_w);
  // In double: the padded window's area can pass 2**63 (huge kernel and padding).
  const double padded_count = double(w.h1 - w.h0) * double(w.w1 - w.w0);
  w.h0 = std::max<index_t>(w.h0, 0);
  w.w0 = std::max<index_t>(w.w0, 0);
  w.h1 = std::min(w.h1, s.H);
  w.w1 = std::min(w.w1, s.W);
  const double count =
      count_include_pad ? padded_count : double(w.h1 - w.h0) * double(w.w1 - w.w0);
  w.divisor = static_cast<float>(std::max(count, 1.0));
  return w;
}

// ---- max pooling over output columns in vector lanes -------------------------

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// The vector path's geometry: columns undilated with stride 1 or 2, and flat
// indices below 2**24, so that they are exact in float lanes.
bool max_pool_vectorizes(const Pool2dShape& s) {
  return s.dilation_w == 1 && (s.stride_w == 1 || s.stride_w == 2) && s.H * s.W <= (1 << 24);
}

// Whether some window reaches past the input's left or right edge; then the
// vector path reads a copy of the plane with -inf columns on both sides (a
// -inf tap never wins, so the result is the max over the window's valid taps,
// with the first valid position when all of them are -inf, as in PyTorch).
bool max_pool_clips_columns(const Pool2dShape& s) {
  return s.pad_w > 0 || (s.W_out() - 1) * s.stride_w + s.KW > s.W;
}

// The copy's row length: columns -pad_w .. (W_out-1)*stride_w - pad_w + KW - 1.
index_t padded_row_length(const Pool2dShape& s) {
  return std::max(s.pad_w + s.W, (s.W_out() - 1) * s.stride_w + s.KW);
}

#if PYDL_X86
alignas(64) constexpr float kLaneNumber[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

// PyTorch's max pooling rule: take v (and its position) when v > best or v is NaN.
template <class W, class V = typename W::V>
PYDL_SIMD_INLINE void take_greater_or_nan(V v, V at, V& best, V& best_at) {
  const auto take = W::greater_or_nan(v, best);
  best = W::select(take, v, best);
  best_at = W::select(take, at, best_at);
}

// Lanes 0..n-1 of p (n <= width); the rest 0, and never read.
template <class W, class V = typename W::V>
PYDL_SIMD_INLINE V load_first(const float* p, index_t n) {
  return n >= W::width ? W::load(p) : W::load(p, W::tail(n));
}

// One (n, c) plane. x: its element (h, w) at x[h * pitch + w], with w from
// -pad_w when the plane is a -inf padded copy. Lanes are n <= width
// consecutive output columns, each scanning its window row-major from -inf at
// the first valid position; a lane's flat index ih * W + iw rides in float.
template <class W>
PYDL_SIMD_INLINE void max_pool_plane_vector(float* y, std::int64_t* arg, const float* x,
                                            index_t pitch, const Pool2dShape& s,
                                            const TapRanges& rows) {
  using V = typename W::V;
  const index_t Ho = s.H_out(), Wo = s.W_out(), sw = s.stride_w, KW = s.KW;
  const V lane_column = W::load(kLaneNumber) * V(float(sw));
  for (index_t oh = 0; oh < Ho; ++oh) {
    const index_t h0 = oh * s.stride_h - s.pad_h, first_row = h0 + rows.lo[oh] * s.dilation_h;
    // Full vectors; a row's last one overlaps the one before when W_out is not a
    // multiple of the width (recomputing a few outputs costs less than masked
    // stores, which AMD runs in microcode). Narrower rows go through a buffer.
    for (index_t ow0 = 0; ow0 < Wo; ow0 += W::width) {
      const index_t ow = Wo >= W::width ? std::min(ow0, Wo - W::width) : 0;
      const index_t n = std::min(W::width, Wo - ow), c = ow * sw - s.pad_w;
      const V column = V(float(c)) + lane_column;  // each lane's window's first column
      V best(kMinusInf), best_at = V(float(first_row * s.W)) + W::vmax(column, V(0.0f));
      for (index_t i = rows.lo[oh]; i < rows.hi[oh]; ++i) {
        const index_t h = h0 + i * s.dilation_h;
        const float* row = x + h * pitch + c;
        V at = V(float(h * s.W)) + column;  // flat index of tap (i, j), j = 0 then on
        if (sw == 1) {
          for (index_t j = 0; j < KW; ++j, at = at + V(1.0f))
            take_greater_or_nan<W>(load_first<W>(row + j, n), at, best, best_at);
          continue;
        }
        // Taps j and j+1 of n windows: the even and odd lanes of the 2n floats from
        // row + j (2n - 1 when j is the last tap).
        for (index_t j = 0; j < KW; j += 2, at = at + V(2.0f)) {
          const index_t count = 2 * n - (j + 1 < KW ? 0 : 1);
          const V a = load_first<W>(row + j, std::min(count, W::width));
          const V b = count > W::width ? load_first<W>(row + j + W::width, count - W::width)
                                       : V(0.0f);
          V even, odd;
          W::deinterleave(a, b, even, odd);
          take_greater_or_nan<W>(even, at, best, best_at);
          if (j + 1 < KW) take_greater_or_nan<W>(odd, at + V(1.0f), best, best_at);
        }
      }
      if (n == W::width) {
        W::store(y + oh * Wo + ow, best);
        W::store_int64(arg + oh * Wo + ow, best_at);
      } else {
        alignas(64) float values[W::width];
        alignas(64) std::int64_t at[W::width];
        W::store(values, best);
        W::store_int64(at, best_at);
        std::memcpy(y + oh * Wo + ow, values, n * sizeof(float));
        std::memcpy(arg + oh * Wo + ow, at, n * sizeof(std::int64_t));
      }
    }
  }
}

// Planes [p0, p1); padded: a (H, padded_row_length) buffer when columns clip.
template <class W>
PYDL_SIMD_INLINE void max_pool_planes_vector(float* out, std::int64_t* indices, const float* in,
                                             const Pool2dShape& s, const TapRanges& rows,
                                             index_t p0, index_t p1, float* padded) {
  const index_t outs = s.H_out() * s.W_out(), HW = s.H * s.W, pitch = padded_row_length(s);
  for (index_t p = p0; p < p1; ++p) {
    const float* x = in + p * HW;
    if (padded) {
      for (index_t h = 0; h < s.H; ++h) std::copy(x + h * s.W, x + h * s.W + s.W,
                                                  padded + h * pitch + s.pad_w);
      max_pool_plane_vector<W>(out + p * outs, indices + p * outs, padded + s.pad_w, pitch, s,
                               rows);
    } else {
      max_pool_plane_vector<W>(out + p * outs, indices + p * outs, x, s.W, s, rows);
    }
  }
}

PYDL_TARGET_AVX2 PYDL_FLATTEN void max_pool_planes_avx2(float* out, std::int64_t* indices,
                                                        const float* in, const Pool2dShape& s,
                                                        const TapRanges& rows, index_t p0,
                                                        index_t p1, float* padded) {
  max_pool_planes_vector<simd::Ymm>(out, indices, in, s, rows, p0, p1, padded);
}
PYDL_TARGET_AVX512 PYDL_FLATTEN void max_pool_planes_avx512(float* out, std::int64_t* indices,
                                                            const float* in, const Pool2dShape& s,
                                                            const TapRanges& rows, index_t p0,
                                                            index_t p1, float* padded) {
  max_pool_planes_vector<simd::Zmm>(out, indices, in, s, rows, p0, p1, padded);
}
#endif

}  // namespace

void max_pool2d_forward(float* out, std::int64_t* indices, const float* in, const Pool2dShape& s) {
  check_pool2d(s, "max_pool2d");
  const index_t Ho = s.H_out(), Wo = s.W_out(), HW = s.H * s.W;
  const TapRanges rows(Ho, s.KH, s.stride_h, s.pad_h, s.dilation_h, s.H);
#if PYDL_X86
  if (use_avx2() && max_pool_vectorizes(s)) {
    const bool clips = max_pool_clips_columns(s);
    parallel_for(s.N * s.C, threads_for(double(s.N) * s.C * HW, kElementsPerThread), 1,
                 [&](index_t p0, index_t p1) {
                   // -inf everywhere; each plane's copy then overwrites the middle columns.
                   std::vector<float> padded(clips ? s.H * padded_row_length(s) : 0, kMinusInf);
                   float* pad = clips ? padded.data() : nullptr;
                   if (use_avx512())
                     max_pool_planes_avx512(out, indices, in, s, rows, p0, p1, pad);
                   else
                     max_pool_planes_avx2(out, indices, in, s, rows, p0, p1, pad);
                 });
    return;
  }
#endif
  const TapRanges cols(Wo, s.KW, s.stride_w, s.pad_w, s.dilation_w, s.W);
  for_each_plane(s, [&](index_t plane) {
    const float* x = in + plane * HW;
    float* y = out + plane * Ho * Wo;
    std::int64_t* arg = indices + plane * Ho * Wo;
    for (index_t oh = 0; oh < Ho; ++oh) {
      const index_t h0 = oh * s.stride_h - s.pad_h, i_lo = rows.lo[oh], i_hi = rows.hi[oh];
      for (index_t ow = 0; ow < Wo; ++ow) {
        const index_t w0 = ow * s.stride_w - s.pad_w, j_lo = cols.lo[ow], j_hi = cols.hi[ow];
        // Start from the window's first element; then selects, not branches
        // (on noisy data a compare branch mispredicts about half the time).
        index_t best_at = (h0 + i_lo * s.dilation_h) * s.W + w0 + j_lo * s.dilation_w;
        float best = x[best_at];
        for (index_t i = i_lo; i < i_hi; ++i) {
          const index_t row = (h0 + i * s.dilation_h) * s.W;
          for (index_t j = j_lo; j < j_hi; ++j) {
            const index_t at = row + w0 + j * s.dilation_w;
            const float v = x[at];
            const bool take = (v > best) | (v != v);  // v != v: NaN propagates
            best = take ? v : best;
            best_at = take ? at : best_at;
          }
        }
        y[oh * Wo + ow] = best;
        arg[oh * Wo + ow] = best_at;
      }
    }
  });
}

void max_pool2d_backward(float* grad_in, const float* grad_out, const std::int64_t* indices,
                         const Pool2dShape& s) {
  check_pool2d(s, "max_pool2d_backward");
  const index_t outs = s.H_out() * s.W_out(), HW = s.H * s.W;
  std::atomic<bool> bad_index{false};
  for_each_plane(s, [&](index_t plane) {
    const std::int64_t* arg = indices + plane * outs;
    const float* dy = grad_out + plane * outs;
    float* dx = grad_in + plane * HW;
    for (index_t k = 0; k < outs; ++k)
      if (arg[k] < 0 || arg[k] >= HW) {
        bad_index = true;
        return;
      }
    std::fill(dx, dx + HW, 0.0f);
    for (index_t k = 0; k < outs; ++k) dx[arg[k]] += dy[k];
  });
  require(!bad_index, "max_pool2d_backward: indices must lie in [0, H*W) = [0, " +
                          std::to_string(HW) + ") for " + s.describe());
}

void avg_pool2d_forward(float* out, const float* in, const Pool2dShape& s, bool count_include_pad) {
  check_pool2d(s, "avg_pool2d");
  require(s.dilation_h == 1 && s.dilation_w == 1, "avg_pool2d: dilation is not supported");
  const index_t Ho = s.H_out(), Wo = s.W_out(), HW = s.H * s.W;
  for_each_plane(s, [&](index_t plane) {
    const float* x = in + plane * HW;
    float* y = out + plane * Ho * Wo;
    for (index_t oh = 0; oh < Ho; ++oh)
      for (index_t ow = 0; ow < Wo; ++ow) {
        const AvgWindow w = avg_window(s, oh, ow, count_include_pad);
        float sum = 0.0f;
        for (index_t ih = w.h0; ih < w.h1; ++ih)
          for (index_t iw = w.w0; iw < w.w1; ++iw) sum += x[ih * s.W + iw];
        y[oh * Wo + ow] = sum / w.divisor;
      }
  });
}

void avg_pool2d_backward(float* grad_in, const float* grad_out, const Pool2dShape& s,
                         bool count_include_pad) {
  check_pool2d(s, "avg_pool2d_backward");
  require(s.dilation_h == 1 && s.dilation_w == 1, "avg_pool2d: dilation is not supported");
  const index_t Ho = s.H_out(), Wo = s.W_out(), HW = s.H * s.W;
  for_each_plane(s, [&](index_t plane) {
    const float* dy = grad_out + plane * Ho * Wo;
    float* dx = grad_in + plane * HW;
    std::fill(dx, dx + HW, 0.0f);
    for (index_t oh = 0; oh < Ho; ++oh)
      for (index_t ow = 0; ow < Wo; ++ow) {
        const AvgWindow w = avg_window(s, oh, ow, count_include_pad);
        const float g = dy[oh * Wo + ow] / w.divisor;
        for (index_t ih = w.h0; ih < w.h1; ++ih)
          for (index_t iw = w.w0; iw < w.w1; ++iw) dx[ih * s.W + iw] += g;
      }
  });
}

}  // namespace pydl
