// Fused optimizer updates on the GPU, with the semantics (and the float
// arithmetic, operation for operation) of csrc/optim.h. Pointers are device
// pointers; each call only enqueues work on `stream`.
#pragma once
#include "../csrc/optim.h"  // UpdateTensor and the options structs
#include "common.cuh"

namespace pydl::cuda {

// Each call updates `count` parameters with the same options; kernels take
// many parameters at once, so a model's small tensors share launches.
void sgd_step(const UpdateTensor* tensors, int count, const SgdOptions& options,
              cudaStream_t stream);
void rmsprop_step(const UpdateTensor* tensors, int count, const RmspropOptions& options,
                  cudaStream_t stream);
void adagrad_step(const UpdateTensor* tensors, int count, const AdagradOptions& options,
                  cudaStream_t stream);
void adam_step(const UpdateTensor* tensors, int count, const AdamOptions& options,
               cudaStream_t stream);

}  // namespace pydl::cuda
