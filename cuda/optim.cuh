// Fused optimizer updates on the GPU, with the semantics (and the float
// arithmetic, operation for operation) of csrc/optim.h. Pointers are device
// pointers; each call only enqueues work on `stream`.
#pragma once
#include "../csrc/optim.h"  // SgdOptions, RmspropOptions, AdagradOptions, AdamOptions
#include "common.cuh"

namespace pydl::cuda {

// One parameter of an update: param (written), grad (read) and up to three
// state arrays, all of n floats. The state arrays, in order, are
//   sgd: momentum_buffer;  rmsprop: square_avg, grad_avg, momentum_buffer;
//   adagrad: state_sum;    adam: exp_avg, exp_avg_sq, max_exp_avg_sq;
// and may be null where csrc/optim.h lets them be (e.g. no momentum).
struct UpdateTensor {
  float* param;
  const float* grad;
  float* state[3];
  index_t n;
};

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
