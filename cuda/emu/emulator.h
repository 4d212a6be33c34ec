// Host emulation of the CUDA execution model, for testing cuda/*.cu on a
// machine without a GPU (see cuda/common.cuh). It aims at faithful semantics,
// not speed:
//  - blocks run one after another; each thread of a block is an OS thread that
//    runs the kernel body, so __syncthreads keeps its meaning;
//  - __shared__ variables are function statics placed in one linker section,
//    and that section and the dynamic shared memory are filled with NaN bytes
//    (0xFF) before every block, so reading memory nothing wrote shows up;
//  - warp shuffles and votes go through a per-warp exchange array between two
//    warp barriers, so code relying on implicit lock-step fails here as it
//    may on a real GPU;
//  - an exception in any thread, a thread that returns while others wait at a
//    barrier, and an invalid launch configuration are reported as a
//    std::runtime_error from the launch, never a hang.
#pragma once

#include <atomic>
#include <bit>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

// ---- CUDA keywords ---------------------------------------------------------
// Kernels and device functions become inline functions: their __shared__
// statics are then COMDAT objects, which GCC lets share one named section.
// (A __shared__ in a function with internal linkage is a compile error here.)
#define __global__ inline
#define __device__ inline
#define __host__
#define __forceinline__ __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static __attribute__((section("pydl_emu_shared"), aligned(16)))

// ---- vector types and thread coordinates -----------------------------------
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }

// Set by the emulator for each emulated thread before it runs the kernel.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

// ---- runtime API subset -----------------------------------------------------
// The emulated module works on host pointers: there is no cudaMalloc/cudaMemcpy.
// (cudaMallocAsync, for kernel workspaces, is host malloc.)
struct CUstream_st;
using cudaStream_t = CUstream_st*;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2 };
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
};
inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : e == cudaErrorInvalidValue ? "invalid argument"
                                                                     : "out of memory";
}
// Launch errors are thrown by the launch itself, so nothing is ever pending.
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* device) { *device = 0; return cudaSuccess; }
// The emulated device reports 8 multiprocessors, so launch heuristics that
// depend on the count take both of their branches at test-sized shapes, and
// compute capability 8.0, so the TF32 (wmma) paths run too.
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = 8; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 8; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}

// Launches run synchronously, so the memset can too (emulated memory is host memory).
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t = nullptr) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}
// Stream-ordered workspace: host memory, filled with NaN bytes (0xFF) so a
// read of workspace that nothing wrote shows up; freed at once, since every
// launch before the free has already finished.
inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t = nullptr) {
  *p = std::malloc(bytes > 0 ? bytes : 1);
  if (!*p) return cudaErrorMemoryAllocation;
  std::memset(*p, 0xFF, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t = nullptr) {
  std::free(p);
  return cudaSuccess;
}

namespace pydl_emu {

// Thrown inside emulated threads to unwind them when the launch has failed.
struct Aborted {};

class Launch;

// A barrier for a fixed set of emulated threads (a block or a warp). Threads
// that returned from the kernel call exit(); if the others then wait for them,
// the launch fails instead of hanging.
class Barrier {
 public:
  void reset(unsigned participants, std::string name) {
    expected_ = participants;
    name_ = std::move(name);
    arrived_ = exited_ = 0;
  }
  void arrive_and_wait();
  void exit(Launch& launch);
  void abort();
  // Between blocks, when no thread is inside any barrier.
  void restart() {
    std::lock_guard lock(mutex_);
    arrived_ = exited_ = 0;
  }

 private:
  void release_locked() {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
  }
  std::string deadlock_message() const;

  std::mutex mutex_;
  std::condition_variable cv_;
  unsigned expected_ = 0, arrived_ = 0, exited_ = 0;
  std::uint64_t generation_ = 0;
  bool aborted_ = false;
  std::string name_;
};

struct Warp {
  Barrier barrier;
  unsigned lanes = 0;  // lanes present: 32 except in a block's last, partial warp
  std::uint64_t slots[32];  // one value per lane for shuffles and votes
};

// One kernel launch: the block's threads, its barriers, the dynamic shared
// memory, and the first error any thread raised.
class Launch {
 public:
  Launch(dim3 grid, dim3 block, std::size_t dynamic_smem_bytes, const char* file, int line);
  void run(const std::function<void()>& body);

  // Records the first failure and wakes every waiting thread.
  void fail(std::exception_ptr error, const std::string& where);

  Barrier block_barrier;
  std::vector<Warp> warps;
  // The launch's dynamic shared memory, 16-byte aligned.
  unsigned char* dynamic_smem_data() { return dynamic_smem_base_; }

 private:
  void thread_main(unsigned linear, const std::function<void()>& body);
  void begin_block();

  dim3 grid_, block_;
  unsigned threads_;
  std::string origin_;
  Barrier boundary_;  // all threads meet here between blocks
  std::vector<unsigned char> dynamic_smem_;  // over-allocated by 16 for the alignment
  unsigned char* dynamic_smem_base_ = nullptr;
  std::mutex error_mutex_;
  std::exception_ptr error_;
  std::string error_where_;
  std::atomic<bool> failed_{false};
};

// The emulated thread's place in the launch.
struct ThreadState {
  Launch* launch = nullptr;
  unsigned warp = 0, lane = 0;
};
inline thread_local ThreadState current;

// Runs `body` as a kernel over grid x block; throws std::runtime_error naming
// file:line of the launch when the configuration is invalid or a thread failed.
void launch(dim3 grid, dim3 block, std::size_t dynamic_smem_bytes, const char* file, int line,
            const std::function<void()>& body);

// Binds a kernel and its launch configuration; calling it with the kernel's
// arguments runs the launch (see PYDL_LAUNCH in cuda/common.cuh).
template <class Kernel>
struct Launcher {
  Kernel* kernel;
  dim3 grid, block;
  std::size_t smem;
  cudaStream_t stream;  // emulated launches run synchronously, in order
  const char* file;
  int line;
  template <class... Args>
  void operator()(const Args&... args) const {
    launch(grid, block, smem, file, line, [&] { kernel(args...); });
  }
};

inline unsigned char* dynamic_smem() { return current.launch->dynamic_smem_data(); }

// ---- warp exchange -----------------------------------------------------------
// Checks that `mask` names exactly the lanes of the calling warp; partial-warp
// masks are not emulated.
void check_warp_mask(unsigned mask, const Warp& warp, const char* op);

// Every lane publishes `value`, then reads lane `source(lane)`'s value.
template <class T, class SourceLane>
T exchange(unsigned mask, T value, SourceLane source, const char* op) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t), "shuffled type wider than 8 bytes");
  ThreadState& t = current;
  Warp& warp = t.launch->warps[t.warp];
  check_warp_mask(mask, warp, op);
  std::memcpy(&warp.slots[t.lane], &value, sizeof(T));
  warp.barrier.arrive_and_wait();
  T result;
  std::memcpy(&result, &warp.slots[source(t.lane)], sizeof(T));
  warp.barrier.arrive_and_wait();  // nobody overwrites a slot still being read
  return result;
}

// Every lane publishes `predicate`; returns the ballot of the warp.
unsigned ballot(unsigned mask, int predicate, const char* op);

}  // namespace pydl_emu

#define PYDL_EMU_LAUNCH(kernel, grid, block, smem, stream) \
  ::pydl_emu::Launcher<std::remove_pointer_t<decltype(&kernel)>>{&kernel, grid, block, smem, stream, __FILE__, __LINE__}

// ---- synchronization, shuffles and votes -----------------------------------
inline void __syncthreads() {
  pydl_emu::current.launch->block_barrier.arrive_and_wait();
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  pydl_emu::ThreadState& t = pydl_emu::current;
  pydl_emu::Warp& warp = t.launch->warps[t.warp];
  pydl_emu::check_warp_mask(mask, warp, "__syncwarp");
  warp.barrier.arrive_and_wait();
}

// Source lanes follow the CUDA rules: within segments of `width` lanes, and a
// lane whose source falls outside its segment keeps its own value.
template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return pydl_emu::exchange(mask, v, [=](unsigned lane) {
    return (lane / width) * width + (static_cast<unsigned>(src) % width);
  }, "__shfl_sync");
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return pydl_emu::exchange(mask, v, [=](unsigned lane) {
    unsigned s = lane ^ static_cast<unsigned>(lane_mask);
    return s / width == lane / width ? s : lane;
  }, "__shfl_xor_sync");
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return pydl_emu::exchange(mask, v, [=](unsigned lane) {
    unsigned s = lane + delta;
    return s / width == lane / width ? s : lane;
  }, "__shfl_down_sync");
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return pydl_emu::exchange(mask, v, [=](unsigned lane) {
    return lane % width >= delta ? lane - delta : lane;
  }, "__shfl_up_sync");
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return pydl_emu::ballot(mask, predicate, "__ballot_sync");
}
inline int __any_sync(unsigned mask, int predicate) {
  return pydl_emu::ballot(mask, predicate, "__any_sync") != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
  return pydl_emu::ballot(mask, predicate, "__all_sync") == mask;
}

// ---- atomics ----------------------------------------------------------------
template <class T>
T atomicAdd(T* address, T value) { return std::atomic_ref<T>(*address).fetch_add(value); }
template <class T>
T atomicCAS(T* address, T compare, T value) {
  std::atomic_ref<T>(*address).compare_exchange_strong(compare, value);
  return compare;  // the old value, whether or not it was replaced
}
template <class T>
T atomicMax(T* address, T value) {
  std::atomic_ref<T> a(*address);
  T old = a.load();
  while (old < value && !a.compare_exchange_weak(old, value)) {}
  return old;
}

// ---- intrinsics ---------------------------------------------------------------
template <class T>
T __ldg(const T* p) { return *p; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }

// ---- tensor cores -------------------------------------------------------------
#include "wmma.h"
