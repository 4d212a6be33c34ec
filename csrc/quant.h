// int8 inference kernels: u8 activations x s8 weights -> int32, then float32.
//
// Quantized values: x ~ a_scale * (qa - a_zero) with qa in [0, 255] (one scale
// and zero point per tensor), w[n][k] ~ w_scale[n] * qw[n][k] with qw in
// [-127, 127] (symmetric, one scale per output channel). Then
//   y[m][n] = a_scale * w_scale[n] * (sum_k qa[m][k] qw[n][k] - a_zero * colsum[n]) + bias[n]
// with colsum[n] = sum_k qw[n][k], computed once when the weights are packed.
//
// The integer sums are exact on every path: no pair of products is ever
// saturated (the AVX2 path widens to 16 bits before its pair sums), and int32
// holds any sum of K <= kInt8MaxK products (65536 * 255 * 128 < 2^31).
#pragma once
#include <cstdint>

#include "common.h"
#include "conv.h"

namespace pydl {

constexpr index_t kInt8MaxK = 65536;

// The GEMM runs C (out channels x columns) = W (out channels x K) . X, so the
// weights are the broadcast rows (packed once: each row padded to whole
// groups of 4 k, one 32-bit word per group) and the activations (batch rows
// of a Linear, pixels of a convolution) are packed per call into 16-column
// panels as they are quantized. The columns are written back in the output's
// own layout by the float epilogue.
index_t int8_groups(index_t K);  // words per packed weight row: ceil(K / 4)
void int8_pack_weights(std::uint32_t* rows, std::int32_t* colsum, const std::int8_t* qw,
                       index_t N, index_t K);

// Exact integer product: c (M x N int32, row-major) with
// c[m][n] = sum_k w[m][k] * x[n][k], w packed by int8_pack_weights from
// (M x K) s8, x (N x K) u8 row-major.
void int8_gemm(std::int32_t* c, const std::uint32_t* w_rows, const std::uint8_t* x, index_t M,
               index_t N, index_t K);

// The float epilogue's per-channel constants (see the formula at the top).
struct Int8Output {
  const float* w_scale;      // (N,)
  const std::int32_t* colsum;  // (N,)
  const float* bias;         // (N,) or null
  float a_scale;
  std::int32_t a_zero;
};

// y (M x N float32) = the quantized linear map of x (M x K float32): x
// quantized, q = clamp(round_half_even(x * (1 / a_scale)) + a_zero, 0, 255),
// times the N packed weight rows, then the epilogue.
void int8_linear(float* y, const float* x, const std::uint32_t* w_rows, index_t M, index_t N,
                 index_t K, const Int8Output& o);

// y (N, C_out, H_out, W_out) = the quantized convolution of x (N, C_in, H, W):
// x quantized as in int8_linear, im2col (padding with a_zero, the code of
// 0.0), then the weights packed from (C_out, C_in * KH * KW). groups must be 1.
void int8_conv2d(float* y, const float* x, const std::uint32_t* w_rows, const Conv2dShape& s,
                 const Int8Output& o);

// Which int8 micro-kernel runs: "avx512_vnni", "avx2" or "portable".
const char* int8_kernel_name();

}  // namespace pydl
