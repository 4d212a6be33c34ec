// The machine's floating-point peak, measured: what "fraction of peak" in the
// benchmarks is a fraction of.
#pragma once
#include "common.h"

namespace pydl {

// GFLOP/s of a register-only fused multiply-add loop run for about `seconds`
// on `threads` threads (AVX2/FMA when the CPU has it, a scalar loop
// otherwise). No memory traffic: this is the arithmetic ceiling of any kernel.
double fma_peak_gflops(int threads, double seconds);

}  // namespace pydl
