// Shared by every CPU kernel family: threading, instruction-set choice, errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace pydl {

using index_t = std::int64_t;

// ceil(a / b) for a >= 0, b > 0: blocks of b needed to cover a.
inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

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
// A ladder of kernel paths, each including the ones below it: portable C++ <
// AVX2+FMA (ymm) < AVX-512 F+BW+DQ+VL (zmm and opmask registers). Kernels
// compile each vector version with a target attribute and call it only when
// the active path includes it, so one binary runs on any x86-64.
enum class Isa { portable, avx2, avx512 };
Isa active_isa();
// The highest path this CPU and its OS support (AVX-512 needs the OS to save
// the opmask and zmm state, read from XCR0, not only CPUID).
Isa best_isa();
// Picks a path at or below best_isa() (PYDL_ISA, pydl.set_isa, tests and
// benchmarks); asking for one above it throws, naming the best.
void set_isa(Isa isa);
const char* isa_name(Isa isa);     // "portable", "avx2", "avx512"
Isa parse_isa(const std::string& name);  // the inverse; throws on other names
inline bool use_avx2() { return active_isa() >= Isa::avx2; }
inline bool use_avx512() { return active_isa() >= Isa::avx512; }

// Extensions beyond the ladder, for the low-precision kernels. cpu_features()
// says what the CPU and OS support; has_*() also require the active path to
// include the extension's vector width, so set_isa("avx2") turns the AVX-512
// extensions off and tests reach every path.
struct CpuFeatures {
  bool avx2 = false;         // AVX2 + FMA, ymm state enabled
  bool avx512 = false;       // AVX-512 F+BW+DQ+VL, opmask and zmm state enabled
  bool avx512_vnni = false;  // vpdpbusd/vpdpwssd on zmm (int8/int16 dot products)
  bool avx512_bf16 = false;  // vdpbf16ps, vcvtne2ps2bf16 on zmm
  bool avx_vnni = false;     // the VEX-encoded vpdpbusd on ymm
};
const CpuFeatures& cpu_features();
inline bool has_avx512_vnni() { return use_avx512() && cpu_features().avx512_vnni; }
inline bool has_avx512_bf16() { return use_avx512() && cpu_features().avx512_bf16; }
inline bool has_avx_vnni() { return use_avx2() && cpu_features().avx_vnni; }

#if defined(__x86_64__) || defined(_M_X64)
#define PYDL_X86 1
#define PYDL_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define PYDL_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define PYDL_TARGET_AVX512_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")))
#define PYDL_TARGET_AVX512_BF16 \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")))
#define PYDL_TARGET_AVX_VNNI __attribute__((target("avxvnni,avx2,fma")))
#else
#define PYDL_X86 0
#define PYDL_TARGET_AVX2
#define PYDL_TARGET_AVX512
#define PYDL_TARGET_AVX512_VNNI
#define PYDL_TARGET_AVX512_BF16
#define PYDL_TARGET_AVX_VNNI
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
