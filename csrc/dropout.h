// Dropout with a counter-based mask: element i of the call named (seed, offset)
// is kept when uniform(Philox(seed; block i/4, offset) word i%4) >= p, so the
// mask is the same on any number of threads and on the GPU.
#pragma once
#include <cstdint>

#include "common.h"

namespace pydl {

// mask[i] = 1 (keep) or 0 (drop) for i in [0, n); P(keep) = 1 - p.
void dropout_mask(std::uint8_t* mask, index_t n, float p, std::uint64_t seed,
                  std::uint64_t offset);

// y = x * mask / (1 - p), writing the mask too (p = 1 drops everything: y = 0).
void dropout_forward(float* y, std::uint8_t* mask, const float* x, index_t n, float p,
                     std::uint64_t seed, std::uint64_t offset);

// dx = dy * mask / (1 - p).
void dropout_backward(float* dx, const float* dy, const std::uint8_t* mask, index_t n, float p);

}  // namespace pydl
