// Kernels that check the emulator itself, bound into pydl._cuda_emu only:
// each returns what the CUDA semantics say it should, or must fail the launch.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "../common.cuh"

namespace py = pybind11;

namespace pydl::cuda::emu_selftest {

// out[t] for each of the 64 threads: the four shuffles and a ballot.
__global__ void warp_ops_kernel(int* out) {
  const int lane = threadIdx.x % 32, t = threadIdx.x;
  out[0 * 64 + t] = __shfl_sync(kFullWarp, t * 10, 3);         // lane 3's value
  out[1 * 64 + t] = __shfl_xor_sync(kFullWarp, t, 1);          // neighbour's
  out[2 * 64 + t] = __shfl_down_sync(kFullWarp, t, 4);         // lane + 4, else own
  out[3 * 64 + t] = __shfl_up_sync(kFullWarp, t, 2, 16);       // lane - 2 within 16
  out[4 * 64 + t] = static_cast<int>(__ballot_sync(kFullWarp, lane % 3 == 0));
  out[5 * 64 + t] = __any_sync(kFullWarp, lane == 31) + 2 * __all_sync(kFullWarp, lane < 31);
}

// Sum of 0..n-1 with atomicAdd from every thread of 4 blocks.
__global__ void atomics_kernel(int* sum, float* fsum, int* maximum) {
  const int v = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(sum, v);
  atomicAdd(fsum, 1.0f);
  atomicMax(maximum, v);
}

// Reads a shared value that no thread wrote: NaN under the emulator.
__global__ void unwritten_shared_kernel(float* out) {
  __shared__ float never_written[64];
  PYDL_DYNAMIC_SMEM(float, dynamic);
  out[threadIdx.x] = never_written[threadIdx.x] + dynamic[threadIdx.x];
}

__global__ void empty_kernel() {}

__global__ void throwing_kernel() {
  if (threadIdx.x == 5) throw std::runtime_error("thread 5 gave up");
  __syncthreads();
}

// Half the block returns, the other half waits at __syncthreads forever on a GPU.
__global__ void early_return_kernel() {
  if (threadIdx.x < 32) return;
  __syncthreads();
}

// out[i] = TF32 rounding of in[i], one element per thread.
__global__ void float_to_tf32_kernel(const float* in, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = nvcuda::wmma::__float_to_tf32(in[i]);
}

// wmma in the last warp of a 48-thread block, which has only 16 lanes.
__global__ void wmma_partial_warp_kernel(float* out) {
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 8, float> acc;
  nvcuda::wmma::fill_fragment(acc, 1.0f);
  nvcuda::wmma::store_matrix_sync(out, acc, 16, nvcuda::wmma::mem_row_major);
}

void bind(py::module_& m) {
  py::module_ t = m.def_submodule("emulator_selftest", "checks of the CUDA emulator itself");
  t.def("warp_ops", [] {
    std::vector<int> out(6 * 64);
    PYDL_LAUNCH(warp_ops_kernel, dim3(1), dim3(64), 0, nullptr)(out.data());
    return out;
  });
  t.def("atomics", [] {
    int sum = 0, maximum = -1;
    float fsum = 0;
    PYDL_LAUNCH(atomics_kernel, dim3(4), dim3(96), 0, nullptr)(&sum, &fsum, &maximum);
    return py::make_tuple(sum, fsum, maximum);
  });
  t.def("unwritten_shared", [] {
    std::vector<float> out(64);
    PYDL_LAUNCH(unwritten_shared_kernel, dim3(2), dim3(64), 64 * sizeof(float), nullptr)(out.data());
    return out;
  });
  t.def("launch_threads", [](unsigned x, unsigned y) {
    PYDL_LAUNCH(empty_kernel, dim3(1), dim3(x, y), 0, nullptr)();
  });
  t.def("throwing", [] { PYDL_LAUNCH(throwing_kernel, dim3(2), dim3(64), 0, nullptr)(); });
  t.def("early_return", [] { PYDL_LAUNCH(early_return_kernel, dim3(1), dim3(64), 0, nullptr)(); });
  t.def("float_to_tf32", [](const std::vector<float>& in) {
    std::vector<float> out(in.size());
    const int n = static_cast<int>(in.size());
    PYDL_LAUNCH(float_to_tf32_kernel, dim3((n + 63) / 64), dim3(64), 0, nullptr)(in.data(),
                                                                               out.data(), n);
    return out;
  });
  t.def("wmma_partial_warp", [] {
    alignas(32) static float tile[16 * 16];
    float* out = tile;
    PYDL_LAUNCH(wmma_partial_warp_kernel, dim3(1), dim3(48), 0, nullptr)(out);
  });
}

}  // namespace pydl::cuda::emu_selftest
