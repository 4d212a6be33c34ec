// Embedding lookup on the GPU, with the semantics of csrc/embedding.h, except
// for bad indices: indices live on the device, so they are not checked on the
// host. An index outside [0, V) gives a NaN row in the forward output and is
// skipped by the backward. Pointers are device pointers; each call only
// enqueues work on `stream`.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace pydl::cuda {

// out (n, D) = weight[indices] with weight (V, D).
void embedding_forward(float* out, const float* weight, const std::int64_t* indices, index_t n,
                       index_t V, index_t D, cudaStream_t stream);

// dweight (V, D) = sum over positions i with indices[i] == v of dy[i] (n, D);
// the row padding_idx (when >= 0) stays zero. The sums use atomicAdd, so their
// order (and the last bits of a row hit several times) varies from run to run.
void embedding_backward(float* dweight, const float* dy, const std::int64_t* indices, index_t n,
                        index_t V, index_t D, index_t padding_idx, cudaStream_t stream);

}  // namespace pydl::cuda
