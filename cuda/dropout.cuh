// Dropout on the GPU, with the semantics of csrc/dropout.h: the keep mask of
// the call named (seed, offset) is the CPU's, bit for bit (both draw element i
// from word i % 4 of the Philox4x32-10 block (i / 4, offset) under key seed).
// Pointers are device pointers; each call only enqueues work on `stream`.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace pydl::cuda {

// mask[i] = 1 (keep) or 0 (drop) for i in [0, n); P(keep) = 1 - p.
void dropout_mask(std::uint8_t* mask, index_t n, float p, std::uint64_t seed,
                  std::uint64_t offset, cudaStream_t stream);

// y = x * mask / (1 - p), writing the mask too (p = 1 drops everything: y = 0).
void dropout_forward(float* y, std::uint8_t* mask, const float* x, index_t n, float p,
                     std::uint64_t seed, std::uint64_t offset, cudaStream_t stream);

// dx = dy * mask / (1 - p).
void dropout_backward(float* dx, const float* dy, const std::uint8_t* mask, index_t n, float p,
                      cudaStream_t stream);

}  // namespace pydl::cuda
