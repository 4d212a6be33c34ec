// 2-D max and average pooling, NCHW float32, PyTorch semantics.
#pragma once
#include <cstdint>
#include <string>

#include "common.h"

namespace pydl {

// input (N, C, H, W) -> output (N, C, H_out, W_out) with, per axis,
//   out = floor_or_ceil((H + 2*pad - dilation*(K-1) - 1) / stride) + 1,
// and in ceil_mode the last window dropped when it would start past the input
// and its left padding ((out-1)*stride >= H + pad).
struct Pool2dShape {
  index_t N, C, H, W;
  index_t KH, KW, stride_h, stride_w, pad_h, pad_w;
  index_t dilation_h = 1, dilation_w = 1;
  bool ceil_mode = false;

  index_t H_out() const;
  index_t W_out() const;
  std::string describe() const;  // for error messages
};

// Throws std::invalid_argument naming the shapes for a kernel or stride < 1,
// padding above half the kernel size (undilated, as PyTorch), an empty output,
// sizes whose arithmetic would overflow, or a window (with dilation) lying
// wholly in the padding, where PyTorch returns -inf.
void check_pool2d(const Pool2dShape& s, const char* op);

// out = max over each window; indices[...] = the argmax as ih * W + iw within
// its (n, c) plane (the first maximum; NaN wins, as in PyTorch).
void max_pool2d_forward(float* out, std::int64_t* indices, const float* in, const Pool2dShape& s);

// grad_in (overwritten) = grad_out scattered to the saved argmax positions.
// Throws if an index lies outside its H*W plane.
void max_pool2d_backward(float* grad_in, const float* grad_out, const std::int64_t* indices,
                         const Pool2dShape& s);

// out = window sum / divisor; divisor = window size clipped to the padded input
// when count_include_pad, else the number of input elements in the window.
void avg_pool2d_forward(float* out, const float* in, const Pool2dShape& s, bool count_include_pad);
void avg_pool2d_backward(float* grad_in, const float* grad_out, const Pool2dShape& s,
                         bool count_include_pad);

}  // namespace pydl
