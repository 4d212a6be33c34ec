// Shared by every CPU kernel family: threading, instruction-set choice, errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace pydl {

using index_t = std::int64_t;

// ---- threads ---------------------------------------------------------------
// The number of threads kernels may use (pydl.set_num_threads). Defaults to the
// CPUs this process may run on.
int num_threads();
void set_num_threads(int n);

// Threads worth using for `work` units when one thread should get at least
// `grain` units: small ops stay on one thread, so threads never cost more than
// they save.
int threads_for(double work, double grain);

// ---- instruction sets ------------------------------------------------------
// Kernels with an AVX2/FMA version compile it with a target attribute and call
// it only when use_avx2() is true, so one binary runs on any x86-64.
enum class Isa { portable, avx2 };
Isa active_isa();
// For tests and benchmarks: force the portable path, or go back to the best
// one the CPU supports. Asking for avx2 on a CPU without it throws.
void set_isa(Isa isa);
inline bool use_avx2() { return active_isa() == Isa::avx2; }

#if defined(__x86_64__) || defined(_M_X64)
#define PYDL_X86 1
#define PYDL_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define PYDL_X86 0
#define PYDL_TARGET_AVX2
#endif

// ---- errors ----------------------------------------------------------------
// Kernels check their arguments before touching memory and throw
// std::invalid_argument (a Python ValueError) naming what was wrong.
[[noreturn]] inline void fail(const std::string& message) {
  throw std::invalid_argument(message);
}
inline void require(bool ok, const std::string& message) {
  if (!ok) fail(message);
}

// An allocation that failed (or whose size does not fit in memory at all):
// std::bad_alloc, a Python MemoryError, whose message names the size.
[[noreturn]] void fail_allocation(double bytes);

// ---- buffers ---------------------------------------------------------------
// A caching allocator for kernel outputs and workspaces: freed blocks are kept
// by size and handed out again, so a training loop that allocates the same
// shapes every step pays for fresh pages (first touch) only once.
void* cached_alloc(std::size_t bytes);
void cached_free(void* ptr);
struct AllocatorStats {
  std::size_t bytes_in_use = 0;
  std::size_t bytes_cached = 0;
  std::size_t hits = 0;
  std::size_t misses = 0;
};
AllocatorStats allocator_stats();
// Returns every cached block to the system.
void allocator_release_cache();

// RAII workspace from the caching allocator.
template <class T>
class Workspace {
 public:
  explicit Workspace(std::size_t count) : ptr_(nullptr) {
    if (count > SIZE_MAX / sizeof(T)) fail_allocation(double(count) * sizeof(T));
    ptr_ = static_cast<T*>(cached_alloc(count * sizeof(T)));
  }
  ~Workspace() { cached_free(ptr_); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_;
};

}  // namespace pydl
