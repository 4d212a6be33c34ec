// bfloat16 GEMM for autocast: float32 in and out, bfloat16 operands, float32
// accumulation. bfloat16 is the top half of a float32 (8 exponent bits, 7
// mantissa bits); a product of two is exact in float32, so the result is the
// float32-accumulated product of the bfloat16-rounded operands.
#pragma once
#include <cstdint>

#include "common.h"

namespace pydl {

// Round to nearest even of the low 16 bits; NaN stays NaN (quieted).
inline std::uint16_t bf16_from_float(float x) {
  std::uint32_t bits;
  __builtin_memcpy(&bits, &x, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>(bits >> 16);
}
inline float float_from_bf16(std::uint16_t h) {
  const std::uint32_t bits = std::uint32_t(h) << 16;
  float x;
  __builtin_memcpy(&x, &bits, 4);
  return x;
}

// dst[i] = x[i] rounded to bfloat16 (as float32), for i < n.
void round_to_bf16(float* dst, const float* x, index_t n);

// C = op(A) op(B) + beta * C with op(A), op(B) rounded to bfloat16: sgemm's
// arguments (gemm.h), with alpha == 1 and beta 0 or 1. vdpbf16ps where the CPU
// has AVX512_BF16; elsewhere the rounded operands go through sgemm's FMA kernels.
void gemm_bf16(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
               const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
               index_t ldc);

// Which bf16 path runs: "avx512_bf16", or "sgemm" (the rounded operands on the
// float32 kernels of the active ISA).
const char* bf16_kernel_name();

}  // namespace pydl
