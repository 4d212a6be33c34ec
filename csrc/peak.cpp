// The FMA peak: independent multiply-add chains, enough of them to hide the
// FMA latency on every pipe (chains >= latency x pipes, e.g. 4 cycles x 2 = 8),
// so the loop runs at the issue rate of the FMA units.
#include "peak.h"

#include <algorithm>
#include <chrono>
#include <vector>

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

}  // namespace

double fma_peak_gflops(int threads, double seconds) {
  require(threads >= 1, "fma_peak_gflops: threads must be >= 1, got " + std::to_string(threads));
  require(seconds > 0 && seconds <= 60,
          "fma_peak_gflops: seconds must be in (0, 60], got " + std::to_string(seconds));
#ifndef _OPENMP
  threads = 1;
#endif
  std::vector<float> sinks(std::size_t(threads) * 16);
  std::vector<double> flops(threads, 0.0);
  const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num();
#else
    const int t = 0;
#endif
    float* sink = &sinks[std::size_t(t) * 16];
#if PYDL_X86
    flops[t] = use_avx512() ? fma_loop_avx512(seconds, sink)
               : use_avx2() ? fma_loop_avx2(seconds, sink)
                            : fma_loop_portable(seconds, sink);
#else
    flops[t] = fma_loop_portable(seconds, sink);
#endif
  }
  // Wall time of the whole team: a thread that did not get a CPU counts.
  const double elapsed = seconds_since(t0);
  double total = 0;
  for (double f : flops) total += f;
  return total / elapsed / 1e9;
}

}  // namespace pydl
