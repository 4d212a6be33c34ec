// PLACEHOLDER reference GEMM (replaced by the packed, blocked kernel).
#include "gemm.h"

namespace pydl {

void sgemm(bool ta, bool tb, index_t M, index_t N, index_t K, float alpha, const float* A,
           index_t lda, const float* B, index_t ldb, float beta, float* C, index_t ldc) {
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      double s = 0;
      for (index_t k = 0; k < K; ++k)
        s += double(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = alpha * float(s) + (beta == 0.f ? 0.f : beta * C[i * ldc + j]);
    }
}

void sgemm_batched(index_t batch, bool ta, bool tb, index_t M, index_t N, index_t K, float alpha,
                   const float* A, index_t lda, index_t sa, const float* B, index_t ldb,
                   index_t sb, float beta, float* C, index_t ldc, index_t sc) {
  for (index_t b = 0; b < batch; ++b)
    sgemm(ta, tb, M, N, K, alpha, A + b * sa, lda, B + b * sb, ldb, beta, C + b * sc, ldc);
}

}  // namespace pydl
