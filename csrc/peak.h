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

}  // namespace pydl
