// Fused softmax cross-entropy: loss and d loss / d logits in one pass per row.
#pragma once
#include "common.h"

namespace pydl {

enum class Reduction { none, mean, sum };

// logits: (N, C). Targets are either class indices (N,) with ignore_index
// skipped, or probabilities (N, C). For each row, with T_i = sum_c t_ic
// (1 for indices and for targets that are distributions):
//   loss_i = -sum_c t_ic log softmax(z_i)_c = T_i logsumexp(z_i) - sum_c t_ic z_ic
//   grad_i = T_i softmax(z_i) - t_i            (t one-hot for indices)
// `losses` (N,) receives loss_i (0 for ignored rows). `grad` (N, C), when not
// null, receives grad_i scaled for the reduction (1/count for mean; 0 rows for
// ignored). Returns the reduced loss (sum or mean; mean over non-ignored rows
// for indices, NaN when no row counts, as PyTorch); for Reduction::none it
// returns the sum.
double softmax_cross_entropy_index(float* losses, float* grad, const float* logits,
                                   const std::int64_t* target, index_t N, index_t C,
                                   Reduction reduction, std::int64_t ignore_index);
double softmax_cross_entropy_prob(float* losses, float* grad, const float* logits,
                                  const float* target, index_t N, index_t C,
                                  Reduction reduction);

}  // namespace pydl
