#include "dropout.h"

#include "parallel.h"
#include "philox.h"

namespace pydl {

namespace {

// Threads split [0, n) at multiples of 64: whole Philox blocks (4 elements) and
// whole cache lines of the uint8 mask.
constexpr index_t kAlign = 64;

int dropout_threads(index_t n) { return threads_for(static_cast<double>(n), 1 << 15); }

// The scale kept elements get: 1/(1-p), or 0 when everything is dropped.
float keep_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

// Writes the mask for [begin, end) (begin a multiple of 4) and calls
// apply(i, keep) on each element.
template <class Apply>
void mask_range(std::uint8_t* mask, index_t begin, index_t end, float p, std::uint64_t seed,
                std::uint64_t offset, const Apply& apply) {
  for (index_t base = begin; base < end; base += 4) {
    const Philox4x32 bits = philox_block(seed, offset, static_cast<std::uint64_t>(base / 4));
    const index_t count = end - base < 4 ? end - base : 4;
    for (index_t lane = 0; lane < count; ++lane) {
      const bool keep = uniform_from_bits(bits.v[lane]) >= p;
      mask[base + lane] = keep;
      apply(base + lane, keep);
    }
  }
}

}  // namespace

void dropout_mask(std::uint8_t* mask, index_t n, float p, std::uint64_t seed,
                  std::uint64_t offset) {
  parallel_for(n, dropout_threads(n), kAlign, [&](index_t begin, index_t end) {
    mask_range(mask, begin, end, p, seed, offset, [](index_t, bool) {});
  });
}

void dropout_forward(float* y, std::uint8_t* mask, const float* x, index_t n, float p,
                     std::uint64_t seed, std::uint64_t offset) {
  const float scale = keep_scale(p);
  parallel_for(n, dropout_threads(n), kAlign, [&](index_t begin, index_t end) {
    mask_range(mask, begin, end, p, seed, offset,
               [&](index_t i, bool keep) { y[i] = keep ? x[i] * scale : 0.0f; });
  });
}

void dropout_backward(float* dx, const float* dy, const std::uint8_t* mask, index_t n, float p) {
  const float scale = keep_scale(p);
  parallel_for(n, dropout_threads(n), kAlign, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
  });
}

}  // namespace pydl
