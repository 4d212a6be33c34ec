// Threads, instruction-set choice and the caching allocator (see common.h).
#include "common.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif

namespace pydl {

// ---- threads ---------------------------------------------------------------

namespace {

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
#endif
  return cpus;
}

int default_threads() {
  std::size_t n = allowed_cpus().size();
#ifdef _OPENMP
  if (n == 0) n = static_cast<std::size_t>(omp_get_num_procs());
#endif
  return std::max<int>(1, static_cast<int>(n));
}

std::atomic<int> g_threads{0};

// Pins OpenMP worker i (i >= 1) to the i-th allowed CPU, so two busy workers
// never share one CPU for long. The calling thread (Python's) stays free: the
// scheduler moves it to whichever CPU is left, and nothing else in the process
// inherits a narrowed affinity. PYDL_PIN_THREADS=0 turns this off.
void pin_workers(int n) {
#if defined(_OPENMP) && defined(__linux__)
  const char* env = std::getenv("PYDL_PIN_THREADS");
  if (env && std::string(env) == "0") return;
  std::vector<int> cpus = allowed_cpus();
  if (n < 2 || static_cast<int>(cpus.size()) < n) return;
#pragma omp parallel num_threads(n)
  {
    int t = omp_get_thread_num();
    if (t > 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpus[t], &set);
      sched_setaffinity(0, sizeof(set), &set);
    }
  }
#else
  (void)n;
#endif
}

}  // namespace

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    set_num_threads(default_threads());
    n = g_threads.load(std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) {
  require(n >= 1, "set_num_threads: n must be >= 1, got " + std::to_string(n));
#ifndef _OPENMP
  n = 1;
#endif
  g_threads.store(n, std::memory_order_relaxed);
  pin_workers(n);
}

int threads_for(double work, double grain) {
  int most = num_threads();
  if (most <= 1 || work < 2 * grain) return 1;
  return static_cast<int>(std::min<double>(most, work / grain));
}

// ---- instruction sets ------------------------------------------------------

namespace {

#if PYDL_X86
struct Cpuid {
  unsigned a = 0, b = 0, c = 0, d = 0;
};
Cpuid cpuid(unsigned leaf, unsigned sub) {
  Cpuid r;
  __asm__ volatile("cpuid" : "=a"(r.a), "=b"(r.b), "=c"(r.c), "=d"(r.d) : "a"(leaf), "c"(sub));
  return r;
}
// XCR0: the register state the OS saves on a context switch.
std::uint64_t xcr0() {
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (std::uint64_t(hi) << 32) | lo;
}
bool bit(unsigned reg, int i) { return (reg >> i) & 1u; }
#endif

CpuFeatures detect_features() {
  CpuFeatures f;
#if PYDL_X86
  const unsigned max_leaf = cpuid(0, 0).a;
  if (max_leaf < 7) return f;
  const Cpuid l1 = cpuid(1, 0), l7 = cpuid(7, 0);
  const Cpuid l7s1 = l7.a >= 1 ? cpuid(7, 1) : Cpuid{};  // l7.a: the last sub-leaf of leaf 7
  // OSXSAVE (CPUID.1:ECX.27) says XGETBV may be executed at all.
  if (!bit(l1.c, 27)) return f;
  const std::uint64_t xcr = xcr0();
  const bool ymm_state = (xcr & 0x6) == 0x6;           // bits 1, 2: xmm, upper ymm
  const bool zmm_state = ymm_state && (xcr & 0xe0) == 0xe0;  // bits 5-7: opmask, zmm
  f.avx2 = ymm_state && bit(l1.c, 28) /* AVX */ && bit(l1.c, 12) /* FMA */ &&
           bit(l7.b, 5) /* AVX2 */;
  f.avx512 = f.avx2 && zmm_state && bit(l7.b, 16) /* F */ && bit(l7.b, 17) /* DQ */ &&
             bit(l7.b, 30) /* BW */ && bit(l7.b, 31) /* VL */;
  f.avx512_vnni = f.avx512 && bit(l7.c, 11);
  f.avx512_bf16 = f.avx512 && bit(l7s1.a, 5);
  f.avx_vnni = f.avx2 && bit(l7s1.a, 4);
#endif
  return f;
}

Isa detect_best() {
  const CpuFeatures& f = cpu_features();
  return f.avx512 ? Isa::avx512 : f.avx2 ? Isa::avx2 : Isa::portable;
}

std::atomic<Isa> g_isa{detect_best()};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect_features();
  return features;
}

Isa best_isa() {
  static const Isa best = detect_best();
  return best;
}

Isa active_isa() { return g_isa.load(std::memory_order_relaxed); }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "portable";
  }
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::portable, Isa::avx2, Isa::avx512})
    if (name == isa_name(isa)) return isa;
  fail("set_isa: expected 'avx512', 'avx2' or 'portable', got '" + name + "'");
}

void set_isa(Isa isa) {
  require(isa <= best_isa(), std::string("set_isa: this CPU has no ") + isa_name(isa) +
                                 " path; the best it supports is '" + isa_name(best_isa()) + "'");
  g_isa.store(isa, std::memory_order_relaxed);
}

// ---- caching allocator -----------------------------------------------------
// Each block carries a 64-byte header holding its size class, so
// cached_free needs only the pointer and the data stays 64-byte aligned.

namespace {

constexpr std::size_t kHeader = 64;

// Size classes: multiples of 256 B up to 64 KiB, then eight steps per power of
// two (at most 12.5% slack).
std::size_t size_class(std::size_t bytes) {
  if (bytes <= (64u << 10)) return std::max<std::size_t>(256, (bytes + 255) & ~std::size_t(255));
  std::size_t top = std::size_t(1) << (63 - __builtin_clzll(bytes - 1));  // largest power of two < bytes
  std::size_t step = top / 8;
  return (bytes + step - 1) / step * step;
}

std::size_t cache_limit() {
  const char* env = std::getenv("PYDL_CACHE_LIMIT_MB");
  long mb = env ? std::atol(env) : 2048;
  return static_cast<std::size_t>(std::max(0L, mb)) << 20;
}

struct Cache {
  std::mutex mutex;
  std::map<std::size_t, std::vector<void*>> free_blocks;  // by size class
  AllocatorStats stats;
  std::size_t limit = cache_limit();
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: arrays may outlive static teardown
  return *c;
}

}  // namespace

namespace {

class AllocationFailed : public std::bad_alloc {
 public:
  explicit AllocationFailed(double bytes) {
    char text[160];
    std::snprintf(text, sizeof(text),
                  "pydl: cannot allocate %.0f bytes (%.3g GiB) for a kernel output or workspace",
                  bytes, bytes / double(1 << 30));
    message_ = text;
  }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

}  // namespace

void fail_allocation(double bytes) { throw AllocationFailed(bytes); }

void* cached_alloc(std::size_t bytes) {
  // Beyond 2**62 bytes no system can serve it, and size_class would wrap.
  if (bytes > (std::size_t(1) << 62)) fail_allocation(double(bytes));
  std::size_t cls = size_class(bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free_blocks.find(cls);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      char* block = static_cast<char*>(it->second.back());
      it->second.pop_back();
      c.stats.bytes_cached -= cls;
      c.stats.bytes_in_use += cls;
      ++c.stats.hits;
      return block + kHeader;
    }
    ++c.stats.misses;
    c.stats.bytes_in_use += cls;
  }
  char* block = static_cast<char*>(std::aligned_alloc(64, kHeader + cls));
  if (!block) {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.stats.bytes_in_use -= cls;
    fail_allocation(double(bytes));
  }
  *reinterpret_cast<std::size_t*>(block) = cls;
  return block + kHeader;
}

void cached_free(void* ptr) {
  if (!ptr) return;
  char* block = static_cast<char*>(ptr) - kHeader;
  std::size_t cls = *reinterpret_cast<std::size_t*>(block);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.stats.bytes_in_use -= cls;
    if (c.stats.bytes_cached + cls <= c.limit) {
      c.free_blocks[cls].push_back(block);
      c.stats.bytes_cached += cls;
      return;
    }
  }
  std::free(block);
}

AllocatorStats allocator_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.stats;
}

void allocator_release_cache() {
  Cache& c = cache();
  std::map<std::size_t, std::vector<void*>> blocks;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    blocks.swap(c.free_blocks);
    c.stats.bytes_cached = 0;
  }
  for (auto& [cls, list] : blocks)
    for (void* b : list) std::free(b);
}

}  // namespace pydl
