// The machine's floating-point peak, measured: what "fraction of peak" in the
// benchmarks is a fraction of.
#pragma once
#include "common.h"

namespace pydl {

// GFLOP/s of a register-only fused multiply-add loop run for about `seconds`
// on `threads` threads on the active instruction set (zmm FMAs on avx512, ymm
// on avx2, a scalar loop on portable). No memory traffic: this is the
// arithmetic ceiling of any kernel on that path.
double fma_peak_gflops(int threads, double seconds);

// The same for the low-precision dot products, on zmm: GOP/s of a vpdpbusd
// loop (AVX512_VNNI: 64 u8*s8 multiply-adds per instruction) and GFLOP/s of a
// vdpbf16ps loop (AVX512_BF16: 32 bf16 multiply-adds), a multiply-add
// counting two. Each throws when the active path lacks its extension.
double vnni_peak_gops(int threads, double seconds);
double bf16_peak_gflops(int threads, double seconds);

}  // namespace pydl
