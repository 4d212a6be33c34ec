// 2-D pooling: one thread per output element (grid-stride), except average
// pooling's backward, which gathers: one thread per input element sums
// dy / divisor over the windows that contain it, so nothing is written twice.
// Max pooling's backward scatters through the saved argmax indices with
// atomicAdd (windows may overlap, so two outputs may pick the same input).
#include "pool.cuh"

#include <algorithm>
#include <climits>
#include <string>

#include "../csrc/shapes.h"  // size_mul, size_add

namespace pydl::cuda {
namespace pool_detail {

constexpr int kThreads = 256;

struct Geometry {
  index_t planes;  // N*C
  int H, W, KH, KW, sh, sw, ph, pw, dh, dw, H_out, W_out;
  bool count_include_pad;
};

Geometry geometry(const Pool2dShape& s, const char* op, bool count_include_pad = false) {
  check_pool2d(s, op);
  // The kernels index a plane, a window and the padded input with 32-bit ints.
  const char* what = "CUDA pooling (32-bit indexing)";
  for (index_t n : {size_mul(s.H, s.W, what), size_mul(s.H_out(), s.W_out(), what),
                    size_add(size_add(s.H, 2 * s.pad_h, what), s.stride_h, what),
                    size_add(size_add(s.W, 2 * s.pad_w, what), s.stride_w, what),
                    size_mul(s.dilation_h, s.KH, what), size_mul(s.dilation_w, s.KW, what)})
    require(n <= INT_MAX, std::string(op) + ": the CUDA kernels index with 32-bit ints; the "
                          "plane, padded input or dilated kernel is too large: " + s.describe());
  return {s.N * s.C,
          static_cast<int>(s.H), static_cast<int>(s.W), static_cast<int>(s.KH),
          static_cast<int>(s.KW), static_cast<int>(s.stride_h), static_cast<int>(s.stride_w),
          static_cast<int>(s.pad_h), static_cast<int>(s.pad_w), static_cast<int>(s.dilation_h),
          static_cast<int>(s.dilation_w), static_cast<int>(s.H_out()),
          static_cast<int>(s.W_out()), count_include_pad};
}

// The taps [lo, hi) of a window starting at `start` whose input position
// start + tap*dilation lies in [0, size).
struct Taps {
  int lo, hi;
};
__device__ __forceinline__ Taps valid_taps(int start, int k, int dilation, int size) {
  int lo = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
  const int hi = size - start <= 0 ? 0 : min(k, (size - start + dilation - 1) / dilation);
  return {min(lo, hi), hi};
}

// Average pooling's window of output (oh, ow), clipped to the input, and its
// divisor: the window clipped to the padded input when count_include_pad,
// else the number of input elements in it.
struct AvgWindow {
  int h0, h1, w0, w1;
  float divisor;
};
__device__ __forceinline__ AvgWindow avg_window(const Geometry& g, int oh, int ow) {
  AvgWindow w;
  w.h0 = oh * g.sh - g.ph;
  w.w0 = ow * g.sw - g.pw;
  w.h1 = min(w.h0 + g.KH, g.H + g.ph);
  w.w1 = min(w.w0 + g.KW, g.W + g.pw);
  // In double: the padded window's area can pass 2**31 (huge kernel and padding).
  const double padded_count = double(w.h1 - w.h0) * double(w.w1 - w.w0);
  w.h0 = max(w.h0, 0), w.w0 = max(w.w0, 0);
  w.h1 = min(w.h1, g.H), w.w1 = min(w.w1, g.W);
  const double count =
      g.count_include_pad ? padded_count : double(w.h1 - w.h0) * double(w.w1 - w.w0);
  w.divisor = static_cast<float>(count > 1 ? count : 1.0);
  return w;
}

__global__ void __launch_bounds__(kThreads)
max_pool_forward_kernel(float* __restrict__ out, std::int64_t* __restrict__ indices,
                        const float* __restrict__ in, Geometry g) {
  const index_t outs = index_t(g.H_out) * g.W_out, total = g.planes * outs;
  for (index_t o = index_t(blockIdx.x) * kThreads + threadIdx.x; o < total;
       o += index_t(gridDim.x) * kThreads) {
    const index_t plane = o / outs;
    const int oh = static_cast<int>(o - plane * outs) / g.W_out;
    const int ow = static_cast<int>(o - plane * outs) % g.W_out;
    const int h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
    const Taps rows = valid_taps(h0, g.KH, g.dh, g.H), cols = valid_taps(w0, g.KW, g.dw, g.W);
    const float* x = in + plane * index_t(g.H) * g.W;
    // From the window's first element on, as the CPU kernel: a later element
    // wins when greater or NaN.
    int best_at = (h0 + rows.lo * g.dh) * g.W + w0 + cols.lo * g.dw;
    float best = __ldg(x + best_at);
    for (int i = rows.lo; i < rows.hi; ++i) {
      const int row = (h0 + i * g.dh) * g.W + w0;
      for (int j = cols.lo; j < cols.hi; ++j) {
        const int at = row + j * g.dw;
        const float v = __ldg(x + at);
        if (v > best || v != v) best = v, best_at = at;
      }
    }
    out[o] = best;
    indices[o] = best_at;
  }
}

__global__ void __launch_bounds__(kThreads)
max_pool_backward_kernel(float* __restrict__ grad_in, const float* __restrict__ grad_out,
                         const std::int64_t* __restrict__ indices, Geometry g) {
  const index_t outs = index_t(g.H_out) * g.W_out, total = g.planes * outs;
  const index_t HW = index_t(g.H) * g.W;
  for (index_t o = index_t(blockIdx.x) * kThreads + threadIdx.x; o < total;
       o += index_t(gridDim.x) * kThreads) {
    const std::int64_t at = indices[o];
    float* dx = grad_in + o / outs * HW;
    if (at < 0 || at >= HW) atomicAdd(dx, NAN);  // NaN stays NaN whatever is added later
    else atomicAdd(dx + at, __ldg(grad_out + o));
  }
}

__global__ void __launch_bounds__(kThreads)
avg_pool_forward_kernel(float* __restrict__ out, const float* __restrict__ in, Geometry g) {
  const index_t outs = index_t(g.H_out) * g.W_out, total = g.planes * outs;
  for (index_t o = index_t(blockIdx.x) * kThreads + threadIdx.x; o < total;
       o += index_t(gridDim.x) * kThreads) {
    const index_t plane = o / outs;
    const int oh = static_cast<int>(o - plane * outs) / g.W_out;
    const int ow = static_cast<int>(o - plane * outs) % g.W_out;
    const AvgWindow w = avg_window(g, oh, ow);
    const float* x = in + plane * index_t(g.H) * g.W;
    float sum = 0.0f;
    for (int ih = w.h0; ih < w.h1; ++ih)
      for (int iw = w.w0; iw < w.w1; ++iw) sum += __ldg(x + ih * g.W + iw);
    out[o] = sum / w.divisor;
  }
}

// dx[ih][iw] = sum of dy[oh][ow] / divisor(oh, ow) over the windows holding
// (ih, iw): oh*sh - ph <= ih < oh*sh - ph + KH, i.e. oh in
// [ceil((ih + ph - KH + 1) / sh), floor((ih + ph) / sh)] within [0, H_out).
__global__ void __launch_bounds__(kThreads)
avg_pool_backward_kernel(float* __restrict__ grad_in, const float* __restrict__ grad_out,
                         Geometry g) {
  const index_t HW = index_t(g.H) * g.W, total = g.planes * HW;
  for (index_t e = index_t(blockIdx.x) * kThreads + threadIdx.x; e < total;
       e += index_t(gridDim.x) * kThreads) {
    const index_t plane = e / HW;
    const int ih = static_cast<int>(e - plane * HW) / g.W;
    const int iw = static_cast<int>(e - plane * HW) % g.W;
    const float* dy = grad_out + plane * index_t(g.H_out) * g.W_out;
    const int oh_lo = max(0, (ih + g.ph - g.KH + g.sh) / g.sh);  // the ceil, clamped at 0
    const int oh_hi = min(g.H_out - 1, (ih + g.ph) / g.sh);
    const int ow_lo = max(0, (iw + g.pw - g.KW + g.sw) / g.sw);
    const int ow_hi = min(g.W_out - 1, (iw + g.pw) / g.sw);
    float sum = 0.0f;
    for (int oh = oh_lo; oh <= oh_hi; ++oh)
      for (int ow = ow_lo; ow <= ow_hi; ++ow)
        sum += __ldg(dy + oh * g.W_out + ow) / avg_window(g, oh, ow).divisor;
    grad_in[e] = sum;
  }
}

// Enough blocks to cover `items` or fill the device eight times over (the
// grid-stride loops take the rest).
dim3 grid_for(index_t items) {
  return dim3(static_cast<unsigned>(std::max<index_t>(
      1, std::min<index_t>(ceil_div(items, kThreads), index_t(multiprocessor_count()) * 8))));
}

}  // namespace pool_detail

using namespace pool_detail;

void max_pool2d_forward(float* out, std::int64_t* indices, const float* in, const Pool2dShape& s,
                        cudaStream_t stream) {
  const Geometry g = geometry(s, "max_pool2d");
  const index_t total = g.planes * g.H_out * g.W_out;
  if (total == 0) return;
  PYDL_LAUNCH(max_pool_forward_kernel, grid_for(total), dim3(kThreads), 0, stream)(out, indices,
                                                                                    in, g);
}

void max_pool2d_backward(float* grad_in, const float* grad_out, const std::int64_t* indices,
                         const Pool2dShape& s, cudaStream_t stream) {
  const Geometry g = geometry(s, "max_pool2d_backward");
  const index_t total = g.planes * g.H_out * g.W_out;
  if (total == 0) return;
  PYDL_CUDA_CHECK(cudaMemsetAsync(grad_in, 0, sizeof(float) * g.planes * g.H * g.W, stream));
  PYDL_LAUNCH(max_pool_backward_kernel, grid_for(total), dim3(kThreads), 0, stream)(
      grad_in, grad_out, indices, g);
}

void avg_pool2d_forward(float* out, const float* in, const Pool2dShape& s, bool count_include_pad,
                        cudaStream_t stream) {
  const Geometry g = geometry(s, "avg_pool2d", count_include_pad);
  require(g.dh == 1 && g.dw == 1, "avg_pool2d: dilation is not supported");
  const index_t total = g.planes * g.H_out * g.W_out;
  if (total == 0) return;
  PYDL_LAUNCH(avg_pool_forward_kernel, grid_for(total), dim3(kThreads), 0, stream)(out, in, g);
}

void avg_pool2d_backward(float* grad_in, const float* grad_out, const Pool2dShape& s,
                         bool count_include_pad, cudaStream_t stream) {
  const Geometry g = geometry(s, "avg_pool2d_backward", count_include_pad);
  require(g.dh == 1 && g.dw == 1, "avg_pool2d: dilation is not supported");
  const index_t total = g.planes * g.H * g.W;
  if (total == 0) return;
  PYDL_LAUNCH(avg_pool_backward_kernel, grid_for(total), dim3(kThreads), 0, stream)(grad_in,
                                                                                     grad_out, g);
}

}  // namespace pydl::cuda
