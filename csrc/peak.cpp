// The FMA peak: independent multiply-add chains, enough of them to hide the
// FMA latency on every pipe (chains >= latency x pipes, e.g. 4 cycles x 2 = 8),
// so the loop runs at the issue rate of the FMA units. The low-precision peaks
// (vpdpbusd, vdpbf16ps) are the same loop over their dot-product instruction.
#include "peak.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "dot_insn.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if PYDL_X86
#include <immintrin.h>
#endif

namespace pydl {

namespace {

constexpr int kChains = 12;           // covers latency 6 x 2 pipes (ymm or zmm)
constexpr long kRoundsPerCheck = 1 << 14;  // rounds between clock reads

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Each round is kChains FMAs of one vector: x = x * m + c converges to
// c / (1 - m), so values stay normal (no denormal slow path) however long it
// runs. Returns the flops done; `sink` keeps the chains alive. One loop over
// a lane type (Ymm: 8 floats, Zmm: 16), compiled into each ISA's entry point.
#if PYDL_X86
struct Ymm {
  struct V { __m256 v; };
  static constexpr int lanes = 8;
  PYDL_TARGET_AVX2 static V set1(float x) { return {_mm256_set1_ps(x)}; }
  PYDL_TARGET_AVX2 static V fmadd(V a, V b, V c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  PYDL_TARGET_AVX2 static V add(V a, V b) { return {_mm256_add_ps(a.v, b.v)}; }
  PYDL_TARGET_AVX2 static void store(float* p, V a) { _mm256_storeu_ps(p, a.v); }
};
struct Zmm {
  struct V { __m512 v; };
  static constexpr int lanes = 16;
  PYDL_TARGET_AVX512 static V set1(float x) { return {_mm512_set1_ps(x)}; }
  PYDL_TARGET_AVX512 static V fmadd(V a, V b, V c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  PYDL_TARGET_AVX512 static V add(V a, V b) { return {_mm512_add_ps(a.v, b.v)}; }
  PYDL_TARGET_AVX512 static void store(float* p, V a) { _mm512_storeu_ps(p, a.v); }
};

template <class L>
inline double fma_loop(double seconds, float* sink) {
  typename L::V x[kChains];
  for (int i = 0; i < kChains; ++i) x[i] = L::set1(1.0f + 0.01f * i);
  const typename L::V m = L::set1(0.999f), c = L::set1(0.001f);
  long rounds = 0;
  const auto t0 = Clock::now();
  do {
    for (long r = 0; r < kRoundsPerCheck; ++r)
      for (int i = 0; i < kChains; ++i) x[i] = L::fmadd(x[i], m, c);
    rounds += kRoundsPerCheck;
  } while (seconds_since(t0) < seconds);
  typename L::V s = x[0];
  for (int i = 1; i < kChains; ++i) s = L::add(s, x[i]);
  L::store(sink, s);
  return double(rounds) * kChains * L::lanes * 2;
}

PYDL_TARGET_AVX2 __attribute__((flatten)) double fma_loop_avx2(double seconds, float* sink) {
  return fma_loop<Ymm>(seconds, sink);
}
PYDL_TARGET_AVX512 __attribute__((flatten)) double fma_loop_avx512(double seconds, float* sink) {
  return fma_loop<Zmm>(seconds, sink);
}
#endif

// The scalar estimate: what code without SIMD can reach.
double fma_loop_portable(double seconds, float* sink) {
  float x[kChains];
  for (int i = 0; i < kChains; ++i) x[i] = 1.0f + 0.01f * i;
  const float m = 0.999f, c = 0.001f;
  long rounds = 0;
  const auto t0 = Clock::now();
  do {
    for (long r = 0; r < kRoundsPerCheck / 8; ++r)
      for (int i = 0; i < kChains; ++i) x[i] = x[i] * m + c;
    rounds += kRoundsPerCheck / 8;
  } while (seconds_since(t0) < seconds);
  float s = 0;
  for (int i = 0; i < kChains; ++i) s += x[i];
  sink[0] = s;
  return double(rounds) * kChains * 2;
}

#if PYDL_X86
// The low-precision dot-product loops: kChains accumulators, each updated by
// one instruction per round from two constant registers (int32 lanes just
// wrap; the float sums grow but stay normal). Return the operations done,
// counting a multiply-add as two.
PYDL_TARGET_AVX512_VNNI double vpdpbusd_loop(double seconds, float* sink) {
  __m512i x[kChains];
  for (int i = 0; i < kChains; ++i) x[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-5);
  long rounds = 0;
  const auto t0 = Clock::now();
  do {
    for (long r = 0; r < kRoundsPerCheck; ++r)
      for (int i = 0; i < kChains; ++i) x[i] = dpbusd(x[i], a, b);
    rounds += kRoundsPerCheck;
  } while (seconds_since(t0) < seconds);
  __m512i s = x[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_epi32(s, x[i]);
  sink[0] = float(_mm512_reduce_add_epi32(s));
  return double(rounds) * kChains * 64 * 2;  // 16 lanes x 4 u8*s8 products
}

PYDL_TARGET_AVX512_BF16 double vdpbf16ps_loop(double seconds, float* sink) {
  __m512 x[kChains];
  for (int i = 0; i < kChains; ++i) x[i] = _mm512_set1_ps(1.0f + 0.01f * i);
  const __m512i a = _mm512_set1_epi32(0x3a833b03);  // bf16 pairs (0.002, 0.001)
  const __m512i b = _mm512_set1_epi32(0x3e803f00);  // and (0.5, 0.25)
  long rounds = 0;
  const auto t0 = Clock::now();
  do {
    for (long r = 0; r < kRoundsPerCheck; ++r)
      for (int i = 0; i < kChains; ++i) x[i] = dpbf16(x[i], a, b);
    rounds += kRoundsPerCheck;
  } while (seconds_since(t0) < seconds);
  __m512 s = x[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, x[i]);
  sink[0] = _mm512_reduce_add_ps(s);
  return double(rounds) * kChains * 32 * 2;  // 16 lanes x 2 bf16 products
}
#endif

void check_peak_arguments(const char* name, int threads, double seconds) {
  require(threads >= 1,
          std::string(name) + ": threads must be >= 1, got " + std::to_string(threads));
  require(seconds > 0 && seconds <= 60,
          std::string(name) + ": seconds must be in (0, 60], got " + std::to_string(seconds));
}

// Operations per second (in units of 1e9) of loop(seconds, sink) run by a
// team of `threads`, over the wall time of the whole team: a thread that did
// not get a CPU counts.
template <class Loop>
double team_rate(int threads, double seconds, const Loop& loop) {
#ifndef _OPENMP
  threads = 1;
#endif
  std::vector<float> sinks(std::size_t(threads) * 16);
  std::vector<double> ops(threads, 0.0);
  const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num();
#else
    const int t = 0;
#endif
    ops[t] = loop(seconds, &sinks[std::size_t(t) * 16]);
  }
  const double elapsed = seconds_since(t0);
  double total = 0;
  for (double f : ops) total += f;
  return total / elapsed / 1e9;
}

}  // namespace

double fma_peak_gflops(int threads, double seconds) {
  check_peak_arguments("fma_peak_gflops", threads, seconds);
  return team_rate(threads, seconds, [](double s, float* sink) {
#if PYDL_X86
    return use_avx512() ? fma_loop_avx512(s, sink)
           : use_avx2() ? fma_loop_avx2(s, sink)
                        : fma_loop_portable(s, sink);
#else
    return fma_loop_portable(s, sink);
#endif
  });
}

double vnni_peak_gops(int threads, double seconds) {
  check_peak_arguments("vnni_peak_gops", threads, seconds);
  require(has_avx512_vnni(), "vnni_peak_gops: the active ISA path has no AVX512_VNNI");
#if PYDL_X86
  return team_rate(threads, seconds, vpdpbusd_loop);
#else
  return 0.0;
#endif
}

double bf16_peak_gflops(int threads, double seconds) {
  check_peak_arguments("bf16_peak_gflops", threads, seconds);
  require(has_avx512_bf16(), "bf16_peak_gflops: the active ISA path has no AVX512_BF16");
#if PYDL_X86
  return team_rate(threads, seconds, vdpbf16ps_loop);
#else
  return 0.0;
#endif
}

}  // namespace pydl
