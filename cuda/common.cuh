// Shared by every CUDA kernel family: the runtime (or its host emulation),
// the one launch macro, error checks and small device helpers.
//
// Every file of cuda/ compiles twice: by nvcc into pydl._cuda, and by the C++
// compiler with PYDL_CUDA_EMULATE into pydl._cuda_emu, where kernels run on
// host threads (cuda/emu/emulator.h) so tests can check them without a GPU.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "../csrc/common.h"  // index_t, require()

#if defined(PYDL_CUDA_EMULATE)
#include "emu/emulator.h"
#else
#include <cuda_runtime.h>
#include <mma.h>  // nvcuda::wmma (the emulator brings its own)
#endif

namespace pydl::cuda {

// Throws std::runtime_error (a Python RuntimeError) for a failed runtime call.
inline void check(cudaError_t status, const char* what, const char* file, int line) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error at ") + file + ":" + std::to_string(line) +
                             ": " + what + ": " + cudaGetErrorString(status));
}

// An attribute of the current device, for launch heuristics.
inline int device_attribute(cudaDeviceAttr attribute) {
  int device = 0, value = 0;
  check(cudaGetDevice(&device), "cudaGetDevice", __FILE__, __LINE__);
  check(cudaDeviceGetAttribute(&value, attribute, device), "cudaDeviceGetAttribute", __FILE__,
        __LINE__);
  return value;
}

inline int multiprocessor_count() { return device_attribute(cudaDevAttrMultiProcessorCount); }

// sm_80 and later have TF32 tensor cores and cp.async.
inline bool has_ampere_features() {
  return device_attribute(cudaDevAttrComputeCapabilityMajor) >= 8;
}

inline unsigned ceil_div(index_t a, index_t b) { return static_cast<unsigned>((a + b - 1) / b); }

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

#if defined(__CUDACC__) && !defined(PYDL_CUDA_EMULATE)
namespace detail {
// Calls the launch, then turns a launch error (bad configuration, too many
// resources) into an exception that names the launch site.
template <class LaunchFn>
struct CheckedLaunch {
  LaunchFn launch;
  const char* file;
  int line;
  template <class... Args>
  void operator()(const Args&... args) const {
    launch(args...);
    check(cudaGetLastError(), "kernel launch", file, line);
  }
};
template <class LaunchFn>
CheckedLaunch(LaunchFn, const char*, int) -> CheckedLaunch<LaunchFn>;
}  // namespace detail
#endif

}  // namespace pydl::cuda

// PYDL_CUDA_CHECK(cudaSomething(...)): throw on failure, naming the call.
#define PYDL_CUDA_CHECK(expr) ::pydl::cuda::check((expr), #expr, __FILE__, __LINE__)

// PYDL_LAUNCH(kernel, grid, block, smem_bytes, stream)(args...): the only way
// kernels are launched. A template kernel goes in parentheses:
// PYDL_LAUNCH((gemm_kernel<64, 64>), ...).
#if defined(PYDL_CUDA_EMULATE)
#define PYDL_LAUNCH(kernel, grid, block, smem_bytes, stream) \
  PYDL_EMU_LAUNCH(kernel, grid, block, smem_bytes, stream)
#define PYDL_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(::pydl_emu::dynamic_smem())
#elif defined(__CUDACC__)
#define PYDL_LAUNCH(kernel, grid, block, smem_bytes, stream)                               \
  ::pydl::cuda::detail::CheckedLaunch {                                                  \
    [&](const auto&... launch_args_) {                                                   \
      kernel<<<(grid), (block), (smem_bytes), (stream)>>>(launch_args_...);              \
    }, __FILE__, __LINE__                                                                \
  }
// Dynamic shared memory (the launch's smem_bytes) as an array of `type`.
#define PYDL_DYNAMIC_SMEM(type, name)                        \
  extern __shared__ __align__(16) unsigned char pydl_smem_[]; \
  type* name = reinterpret_cast<type*>(pydl_smem_)
#endif

#if defined(__CUDACC__) || defined(PYDL_CUDA_EMULATE)
namespace pydl::cuda {

constexpr unsigned kFullWarp = 0xffffffffu;

// ---- reductions -------------------------------------------------------------
struct SumOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};

// Butterfly reduction: after log2(32) xor-shuffles every lane holds op over
// the 32 lanes, so no broadcast is needed.
template <class T, class Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(kFullWarp, v, offset));
  return v;
}

// op over all threads of a 1-D block whose size is a multiple of 32; every
// thread gets the result. Warps reduce, lane 0s publish to shared memory, and
// every warp reduces the partials again (cheaper than another broadcast).
template <class T, class Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T identity) {
  __shared__ T partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_reduce(v, op);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = warp_reduce(lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : identity, op);
  __syncthreads();  // `partial` may be reused by the next reduction
  return v;
}

// ---- asynchronous global -> shared copies ----------------------------------------
// On sm_80+ cp.async moves 16 bytes from global to shared memory without
// passing through registers, so a thread can start the copy of the next slab
// and compute on the current one. Copies issued since the last commit form a
// group; copy_async_wait<N>() returns once at most N groups are still in
// flight, and a __syncthreads() after it makes the data visible to the block.
// Elsewhere (older GPUs, the emulator) the copy is an ordinary one, done at once.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(PYDL_CUDA_EMULATE)
#define PYDL_CP_ASYNC 1
#endif

// dst (shared) and src (global) 16-byte aligned.
__device__ __forceinline__ void copy_async_16(void* dst, const void* src) {
#if defined(PYDL_CP_ASYNC)
  const unsigned shared_address = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared_address), "l"(src));
#else
  *static_cast<float4*>(dst) = *static_cast<const float4*>(src);
#endif
}

__device__ __forceinline__ void copy_async_commit() {
#if defined(PYDL_CP_ASYNC)
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

template <int kGroupsInFlight>
__device__ __forceinline__ void copy_async_wait() {
#if defined(PYDL_CP_ASYNC)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kGroupsInFlight));
#endif
}

// ---- row-wise kernels ----------------------------------------------------------
// Kernels over the rows of a (rows, cols) array give each row to a warp when
// rows are narrow (8 rows per 256-thread block) and to a whole block when wide.
constexpr int kRowBlockThreads = 256;
constexpr index_t kWarpRowMaxCols = 1024;

inline bool block_per_row(index_t cols) { return cols > kWarpRowMaxCols; }
inline dim3 row_grid(index_t rows, index_t cols) {
  return dim3(block_per_row(cols) ? static_cast<unsigned>(rows)
                                  : ceil_div(rows, kRowBlockThreads / 32));
}

// The threads that share one row: rank in [0, size) strides over the columns
// and reduce() combines a value over them (every member gets the result).
template <bool kBlockPerRow>
struct RowGroup {
  index_t row;
  int rank, size;
  __device__ RowGroup()
      : row(kBlockPerRow ? index_t(blockIdx.x)
                         : index_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32),
        rank(kBlockPerRow ? threadIdx.x : threadIdx.x % 32),
        size(kBlockPerRow ? blockDim.x : 32) {}
  template <class T, class Op>
  __device__ __forceinline__ T reduce(T v, Op op, T identity) const {
    if constexpr (kBlockPerRow) return block_reduce(v, op, identity);
    else return warp_reduce(v, op);
  }
};

// log sum_c exp(x_c) of one row, as m + log sum_c exp(x_c - m) with m = max_c x_c.
template <bool kBlockPerRow>
__device__ __forceinline__ float row_logsumexp(const RowGroup<kBlockPerRow>& g, const float* x,
                                               index_t cols) {
  float m = -INFINITY;
  for (index_t c = g.rank; c < cols; c += g.size) m = fmaxf(m, x[c]);
  m = g.reduce(m, MaxOp{}, -INFINITY);
  float s = 0.0f;
  for (index_t c = g.rank; c < cols; c += g.size) s += expf(x[c] - m);
  s = g.reduce(s, SumOp{}, 0.0f);
  return m + logf(s);
}

}  // namespace pydl::cuda
#endif
