// GEMM on the GPU: C = alpha * op(A) * op(B) + beta * C, float32, row-major,
// with the semantics of csrc/gemm.h. Pointers are device pointers; the call
// only enqueues work on `stream`.
#pragma once
#include "common.cuh"

namespace pydl::cuda {

// op(A) is (M,K): A is stored (M,K) with row stride lda, or (K,M) when trans_a.
// op(B) is (K,N): B is stored (K,N) with row stride ldb, or (N,K) when trans_b.
// C is (M,N) with row stride ldc. beta == 0 overwrites C (NaN in C is ignored).
// tf32: on sm_80+ multiply on the tensor cores with the operands rounded to
// TF32 (10-bit mantissa, float accumulation), as PyTorch's allow_tf32; FP32
// elsewhere.
void sgemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
           const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
           index_t ldc, cudaStream_t stream, bool tf32 = false);

// `batch` products, the i-th at A + i*stride_a, B + i*stride_b, C + i*stride_c
// (a stride of 0 broadcasts that operand).
void sgemm_batched(index_t batch, bool trans_a, bool trans_b, index_t M, index_t N, index_t K,
                   float alpha, const float* A, index_t lda, index_t stride_a, const float* B,
                   index_t ldb, index_t stride_b, float beta, float* C, index_t ldc,
                   index_t stride_c, cudaStream_t stream, bool tf32 = false);

}  // namespace pydl::cuda
