// 2-D convolution, NCHW float32, PyTorch semantics (cross-correlation).
#pragma once
#include <string>

#include "common.h"
#include "shapes.h"  // conv_windows

namespace pydl {

// input (N, C_in, H, W), weight (C_out, C_in / groups, KH, KW), bias (C_out,),
// output (N, C_out, H_out, W_out) with
//   H_out = (H + 2*pad_h - dilation_h*(KH-1) - 1) / stride_h + 1   (W likewise).
struct Conv2dShape {
  index_t N, C_in, H, W;
  index_t C_out, KH, KW;
  index_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
  bool bf16 = false;  // autocast: the GEMMs take bfloat16-rounded operands (bf16.h)

  index_t H_out() const { return conv_windows(H, KH, stride_h, pad_h, dilation_h); }
  index_t W_out() const { return conv_windows(W, KW, stride_w, pad_w, dilation_w); }
  std::string describe() const;  // "input (N, C, H, W), weight (...)" for error messages
};

// Throws std::invalid_argument naming the shapes when `s` is not a valid
// convolution (channels not divisible by groups, kernel larger than the padded
// input, stride/dilation < 1, padding < 0). Every kernel below calls it first.
void check_conv2d(const Conv2dShape& s);

// out = conv(in, weight) + bias; bias may be null. winograd_weights: null, or the
// weight's Winograd transform (winograd_transform_weights) when the caller has it,
// which the Winograd path then uses instead of transforming the weight again.
void conv2d_forward(float* out, const float* in, const float* weight, const float* bias,
                    const Conv2dShape& s, const float* winograd_weights = nullptr);

// grad_in = d loss / d in for grad_out = d loss / d out (overwrites grad_in);
// winograd_weights as for conv2d_forward.
void conv2d_backward_input(float* grad_in, const float* grad_out, const float* weight,
                           const Conv2dShape& s, const float* winograd_weights = nullptr);

// grad_weight (overwritten) = d loss / d weight.
void conv2d_backward_weight(float* grad_weight, const float* grad_out, const float* in,
                            const Conv2dShape& s);

// grad_bias (overwritten) = grad_out summed over N, H_out and W_out.
void conv2d_backward_bias(float* grad_bias, const float* grad_out, const Conv2dShape& s);

// col (K x (oh1-oh0)*W_out, row stride ld), K = C_in/groups * KH * KW, for
// output rows [oh0, oh1) of one image's group of planes x:
//   col[(c*KH + i)*KW + j][(oh-oh0)*W_out + ow] = x[c][oh*sh - ph + i*dh][ow*sw - pw + j*dw]
// and `pad` where that lies outside x (0 for float; the zero point for
// quantized planes, quant.cpp). Instantiated for float and uint8_t.
template <class T>
void im2col_rows(T* col, index_t ld, const T* x, const Conv2dShape& s, index_t oh0, index_t oh1,
                 T pad);

// The Winograd F(2x2, 3x3) path (winograd.cpp) for 3x3, stride-1, dilation-1,
// single-group convolutions where it is faster than im2col + GEMM;
// conv2d_forward and conv2d_backward_input take it when
// conv2d_takes_winograd(s, grad_input) (float32 GEMMs and winograd_suits).
// Grad-input takes it only where forward does too, so a forward's weight
// transform serves the grad-input pass of the same step.
bool winograd_suits(const Conv2dShape& s, bool grad_input);
inline bool conv2d_takes_winograd(const Conv2dShape& s, bool grad_input) {
  return !s.bf16 && winograd_suits(s, grad_input);
}
// U (16 x C_out x C_in): U[e][co][ci] = (G g G^T)_e for g = weight[co][ci] (3x3).
inline index_t winograd_weights_size(const Conv2dShape& s) { return 16 * s.C_out * s.C_in; }
void winograd_transform_weights(float* U, const float* weight, const Conv2dShape& s);
// U: the weight's transform, or null to compute it here.
void winograd_forward(float* out, const float* in, const float* weight, const float* bias,
                      const Conv2dShape& s, const float* U);
void winograd_backward_input(float* grad_in, const float* grad_out, const float* weight,
                             const Conv2dShape& s, const float* U);

}  // namespace pydl
