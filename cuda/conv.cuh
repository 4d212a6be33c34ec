// 2-D convolution on the GPU, NCHW float32, with the semantics of csrc/conv.h
// (the shape `s` is checked by check_conv2d first). Pointers are device
// pointers; each call only enqueues work on `stream`.
#pragma once
#include "../csrc/conv.h"  // Conv2dShape
#include "common.cuh"

namespace pydl::cuda {

// out (N, C_out, H_out, W_out) = conv(in, weight) + bias; bias may be null.
void conv2d_forward(float* out, const float* in, const float* weight, const float* bias,
                    const Conv2dShape& s, cudaStream_t stream);
// grad_in (N, C_in, H, W), overwritten.
void conv2d_backward_input(float* grad_in, const float* grad_out, const float* weight,
                           const Conv2dShape& s, cudaStream_t stream);
// grad_weight (C_out, C_in / groups, KH, KW), overwritten.
void conv2d_backward_weight(float* grad_weight, const float* grad_out, const float* in,
                            const Conv2dShape& s, cudaStream_t stream);
// grad_bias (C_out,), overwritten: grad_out summed over N, H_out and W_out.
void conv2d_backward_bias(float* grad_bias, const float* grad_out, const Conv2dShape& s,
                          cudaStream_t stream);

}  // namespace pydl::cuda
