// Splitting a 1-D range of work across OpenMP threads (elementwise and loss).
#pragma once
#include <algorithm>

#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pydl {

// Calls body(begin, end) on `threads` contiguous chunks of [0, n), one per
// thread. Chunk boundaries are multiples of `align` (e.g. 16 floats = one
// cache line) so threads never write to the same line. threads <= 1 runs
// body(0, n) on the calling thread with no parallel region at all.
template <class Body>
void parallel_for(index_t n, int threads, index_t align, const Body& body) {
  if (threads <= 1 || n <= align) {
    if (n > 0) body(index_t(0), n);
    return;
  }
  const index_t chunk = ((n + threads - 1) / threads + align - 1) / align * align;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const index_t begin = std::min<index_t>(n, omp_get_thread_num() * chunk);
    const index_t end = std::min<index_t>(n, begin + chunk);
    if (begin < end) body(begin, end);
  }
#else
  for (index_t begin = 0; begin < n; begin += chunk) body(begin, std::min(n, begin + chunk));
#endif
}

}  // namespace pydl
