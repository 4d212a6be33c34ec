#include "embedding.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "parallel.h"

namespace pydl {

void embedding_check_indices(const std::int64_t* indices, index_t n, index_t V) {
  for (index_t i = 0; i < n; ++i)
    if (indices[i] < 0 || indices[i] >= V)
      fail("embedding: index " + std::to_string(indices[i]) + " at position " +
           std::to_string(i) + " is out of range for an embedding table of " +
           std::to_string(V) + " rows (expected 0 <= index < " + std::to_string(V) + ")");
}

void embedding_forward(float* out, const float* weight, const std::int64_t* indices, index_t n,
                       index_t V, index_t D) {
  (void)V;
  const int threads = threads_for(static_cast<double>(n) * D, 1 << 15);
  parallel_for(n, threads, 1, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i)
      std::memcpy(out + i * D, weight + indices[i] * D, sizeof(float) * D);
  });
}

void embedding_backward(float* dweight, const float* dy, const std::int64_t* indices, index_t n,
                        index_t V, index_t D, index_t padding_idx) {
  // Counting sort of positions by row: row v's positions are
  // order[start[v] .. start[v+1]), ascending.
  Workspace<index_t> start(V + 1), order(std::max<index_t>(n, 1));
  index_t* s = start.get();
  std::fill(s, s + V + 1, index_t(0));
  for (index_t i = 0; i < n; ++i) ++s[indices[i] + 1];
  for (index_t v = 0; v < V; ++v) s[v + 1] += s[v];
  {
    Workspace<index_t> next(std::max<index_t>(V, 1));
    std::copy(s, s + V, next.get());
    for (index_t i = 0; i < n; ++i) order.get()[next.get()[indices[i]]++] = i;
  }
  const index_t* o = order.get();
  const int threads = threads_for(static_cast<double>(V + n) * D, 1 << 15);
  parallel_for(V, threads, 1, [&](index_t begin, index_t end) {
    for (index_t v = begin; v < end; ++v) {
      float* row = dweight + v * D;
      std::fill(row, row + D, 0.0f);
      if (v == padding_idx) continue;
      for (index_t k = s[v]; k < s[v + 1]; ++k) {
        const float* g = dy + o[k] * D;
        for (index_t d = 0; d < D; ++d) row[d] += g[d];
      }
    }
  });
}

}  // namespace pydl
