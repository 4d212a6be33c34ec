// The dot-product instructions of the low-precision kernels, one per line of
// asm. GCC 12 compiles their intrinsics (_mm512_dpbusd_epi32,
// _mm512_dpbf16_ps) with the accumulator copied to a fresh register, and for
// an array of accumulators stored to the stack, at every step; tying the
// accumulator in place ("+v") keeps a tile of them in registers.
#pragma once
#include "common.h"

#if PYDL_X86
#include <immintrin.h>

namespace pydl {

// acc.int32[i] += sum over t < 4 of u8.byte[4i + t] * s8.byte[4i + t] (no saturation).
PYDL_TARGET_AVX512_VNNI inline __m512i dpbusd(__m512i acc, __m512i u8, __m512i s8) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
  return acc;
}

// acc.float[i] += a.bf16[2i] * b.bf16[2i] + a.bf16[2i + 1] * b.bf16[2i + 1].
PYDL_TARGET_AVX512_BF16 inline __m512 dpbf16(__m512 acc, __m512i a, __m512i b) {
  asm("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

}  // namespace pydl
#endif
