// 2-D convolution, NCHW float32, PyTorch semantics (cross-correlation).
#pragma once
#include <string>

#include "common.h"

namespace pydl {

// input (N, C_in, H, W), weight (C_out, C_in / groups, KH, KW), bias (C_out,),
// output (N, C_out, H_out, W_out) with
//   H_out = (H + 2*pad_h - dilation_h*(KH-1) - 1) / stride_h + 1   (W likewise).
struct Conv2dShape {
  index_t N, C_in, H, W;
  index_t C_out, KH, KW;
  index_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;

  index_t H_out() const { return (H + 2 * pad_h - dilation_h * (KH - 1) - 1) / stride_h + 1; }
  index_t W_out() const { return (W + 2 * pad_w - dilation_w * (KW - 1) - 1) / stride_w + 1; }
  std::string describe() const;  // "input (N, C, H, W), weight (...)" for error messages
};

// Throws std::invalid_argument naming the shapes when `s` is not a valid
// convolution (channels not divisible by groups, kernel larger than the padded
// input, stride/dilation < 1, padding < 0). Every kernel below calls it first.
void check_conv2d(const Conv2dShape& s);

// out = conv(in, weight) + bias; bias may be null.
void conv2d_forward(float* out, const float* in, const float* weight, const float* bias,
                    const Conv2dShape& s);

// grad_in = d loss / d in for grad_out = d loss / d out (overwrites grad_in).
void conv2d_backward_input(float* grad_in, const float* grad_out, const float* weight,
                           const Conv2dShape& s);

// grad_weight (overwritten) = d loss / d weight.
void conv2d_backward_weight(float* grad_weight, const float* grad_out, const float* in,
                            const Conv2dShape& s);

// grad_bias (overwritten) = grad_out summed over N, H_out and W_out.
void conv2d_backward_bias(float* grad_bias, const float* grad_out, const Conv2dShape& s);

// The Winograd F(2x2, 3x3) path (winograd.cpp) for 3x3, stride-1, dilation-1,
// single-group convolutions where it is faster than im2col + GEMM;
// conv2d_forward and conv2d_backward_input take it when winograd_suits(s,
// grad_input) says it is the faster one there.
bool winograd_suits(const Conv2dShape& s, bool grad_input);
void winograd_forward(float* out, const float* in, const float* weight, const float* bias,
                      const Conv2dShape& s);
void winograd_backward_input(float* grad_in, const float* grad_out, const float* weight,
                             const Conv2dShape& s);

}  // namespace pydl
