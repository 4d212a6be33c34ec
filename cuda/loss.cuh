// Fused softmax cross-entropy on the GPU, with the semantics of csrc/loss.h.
// Pointers are device pointers; each call only enqueues work on `stream`.
#pragma once
#include "../csrc/loss.h"  // Reduction
#include "common.cuh"

namespace pydl::cuda {

// logits: (N, C). Targets are class indices (N,) with ignore_index skipped, or
// probabilities (N, C). Per row: loss_i = logsumexp(z_i) - sum_c t_ic z_ic,
// grad_i = softmax(z_i) - t_i. `losses` (N,) receives loss_i (0 for ignored
// rows); `grad` (N, C), when not null, grad_i scaled for the reduction (1/count
// for mean) with zero rows for ignored ones; `loss` (one float) the reduced
// loss: mean over non-ignored rows (0 when there are none) or the sum (also for
// Reduction::none). The reduction over rows is deterministic: a fixed tree, no
// atomics. A class index outside [0, C) that is not ignore_index cannot be
// reported from the device: that row's loss and gradient are NaN.
void softmax_cross_entropy_index(float* loss, float* losses, float* grad, const float* logits,
                                 const std::int64_t* target, index_t N, index_t C,
                                 Reduction reduction, std::int64_t ignore_index,
                                 cudaStream_t stream);
void softmax_cross_entropy_prob(float* loss, float* losses, float* grad, const float* logits,
                                const float* target, index_t N, index_t C, Reduction reduction,
                                cudaStream_t stream);

}  // namespace pydl::cuda
