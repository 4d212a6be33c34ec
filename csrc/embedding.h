// Embedding lookup: rows of a (V, D) table gathered by int64 indices, and the
// gradient scattered back (summed per row, in a fixed order).
#pragma once
#include <cstdint>

#include "common.h"

namespace pydl {

// Throws (naming the position and value) unless every index is in [0, V).
void embedding_check_indices(const std::int64_t* indices, index_t n, index_t V);

// out (n, D) = weight[indices] with weight (V, D); indices must be checked.
void embedding_forward(float* out, const float* weight, const std::int64_t* indices, index_t n,
                       index_t V, index_t D);

// dweight (V, D) = sum over positions i with indices[i] == v of dy[i]; the row
// padding_idx (when >= 0) stays zero. Deterministic: positions are bucketed by
// row (a counting sort) and each row sums its positions in their original order,
// one thread per range of rows.
void embedding_backward(float* dweight, const float* dy, const std::int64_t* indices, index_t n,
                        index_t V, index_t D, index_t padding_idx);

}  // namespace pydl
