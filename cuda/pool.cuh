// 2-D max and average pooling on the GPU, NCHW float32, with the semantics of
// csrc/pool.h (the shape is checked by check_pool2d first). Pointers are
// device pointers; each call only enqueues work on `stream`.
#pragma once
#include <cstdint>

#include "../csrc/pool.h"  // Pool2dShape
#include "common.cuh"

namespace pydl::cuda {

// out = max over each window; indices = its argmax as ih * W + iw within the
// (n, c) plane (the first maximum in row-major window order; NaN wins).
void max_pool2d_forward(float* out, std::int64_t* indices, const float* in, const Pool2dShape& s,
                        cudaStream_t stream);
// grad_in (overwritten) = grad_out scattered to the saved argmax positions.
// The device cannot raise: an index outside [0, H*W) makes the first element
// of its plane's gradient NaN.
void max_pool2d_backward(float* grad_in, const float* grad_out, const std::int64_t* indices,
                         const Pool2dShape& s, cudaStream_t stream);

// out = window sum / divisor (csrc/pool.h); dilation must be 1.
void avg_pool2d_forward(float* out, const float* in, const Pool2dShape& s, bool count_include_pad,
                        cudaStream_t stream);
void avg_pool2d_backward(float* grad_in, const float* grad_out, const Pool2dShape& s,
                         bool count_include_pad, cudaStream_t stream);

}  // namespace pydl::cuda
