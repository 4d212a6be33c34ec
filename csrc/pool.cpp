// 2-D max and average pooling. Threads split the N*C planes; each output
// element reads its window with the out-of-range rows and columns clipped off
// up front, so the inner loops carry no bounds checks.
#include "pool.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "parallel.h"

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

}  // namespace

void max_pool2d_forward(float* out, std::int64_t* indices, const float* in, const Pool2dShape& s) {
  check_pool2d(s, "max_pool2d");
  const index_t Ho = s.H_out(), Wo = s.W_out(), HW = s.H * s.W;
  const TapRanges rows(Ho, s.KH, s.stride_h, s.pad_h, s.dilation_h, s.H);
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
