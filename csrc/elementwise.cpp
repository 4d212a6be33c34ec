// Elementwise activations and their gradients, and row-wise softmax /
// log-softmax. Each activation is one struct holding its formula twice: the
// portable scalar form (libm) and, on x86, the AVX2 form over 8 lanes
// (simd_math.h). map_unary / map_binary run either form over an array, split
// across threads when the array is big enough to pay for them.
#include "elementwise.h"

#include <cmath>

#include "parallel.h"
#include "simd_math.h"

namespace pydl {
namespace {

constexpr float kInvSqrt2Pi = 0.39894228040143268f;

// Work per thread (in element-cost units) below which another thread costs
// more than it saves; cost is ~1 for a load-op-store, more for exp/erf.
constexpr double kGrain = 1 << 16;
constexpr index_t kCacheLineFloats = 16;

// ---- activations: y = f(x) and dx = dy * f'(saved) -----------------------

struct Relu {  // NaN passes through, as max(0, x) does in PyTorch
  static constexpr double cost = 1;
  static float scalar(float x) { return x < 0 ? 0.0f : x; }
#if PYDL_X86
  PYDL_TARGET_AVX2 static __m256 vec(__m256 x) { return _mm256_max_ps(_mm256_setzero_ps(), x); }
#endif
};

struct ReluGrad {  // dx = dy where x > 0 (or NaN), else 0
  static constexpr double cost = 1;
  static float scalar(float dy, float x) { return x <= 0 ? 0.0f : dy; }
#if PYDL_X86
  PYDL_TARGET_AVX2 static __m256 vec(__m256 dy, __m256 x) {
    return _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LE_OQ), dy);
  }
#endif
};

// sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, e = exp(-|x|)
// (simd::sigmoid is the same formula over 8 lanes).
struct Sigmoid {
  static constexpr double cost = 4;
  static float scalar(float x) {
    const float e = std::exp(-std::fabs(x));
    return (x < 0 ? e : 1.0f) / (1.0f + e);
  }
#if PYDL_X86
  PYDL_TARGET_AVX2 static __m256 vec(__m256 x) { return simd::sigmoid(x); }
#endif
};

struct SigmoidGrad {  // dx = dy * y (1 - y)
  static constexpr double cost = 1;
  static float scalar(float dy, float y) { return dy * y * (1.0f - y); }
#if PYDL_X86
  PYDL_TARGET_AVX2 static __m256 vec(__m256 dy, __m256 y) {
    return _mm256_mul_ps(_mm256_mul_ps(dy, y), _mm256_sub_ps(_mm256_set1_ps(1.0f), y));
  }
#endif
};

// tanh: libm, or simd::tanh over 8 lanes.
struct Tanh {
  static constexpr double cost = 5;
  static float scalar(float x) { return std::tanh(x); }
#if PYDL_X86
  PYDL_TARGET_AVX2 static __m256 vec(__m256 x) { return simd::tanh(x); }
#endif
};

struct TanhGrad {  // dx = dy * (1 - y^2); (1 - y)(1 + y) or an FMA, since 1 - y*y would cancel
  static constexpr double cost = 1;
  static float scalar(float dy, float y) { return dy * ((1.0f - y) * (1.0f + y)); }
#if PYDL_X86
  PYDL_TARGET_AVX2 static __m256 vec(__m256 dy, __m256 y) {
    return _mm256_mul_ps(dy, _mm256_fnmadd_ps(y, y, _mm256_set1_ps(1.0f)));
  }
#endif
};

// gelu(x) = x Phi(x), Phi(x) = erfc(-x/sqrt2) / 2 (simd::normal_cdf). The
// portable form works in double: in float, rounding x/sqrt2 alone would cost
// the left tail x^2 ulp of relative accuracy.
double normal_cdf(double x) { return 0.5 * std::erfc(-x * 0.70710678118654752); }

struct Gelu {
  static constexpr double cost = 8;
  static float scalar(float x) { return float(x * normal_cdf(x)); }
#if PYDL_X86
  PYDL_TARGET_AVX2 static __m256 vec(__m256 x) {
    return _mm256_mul_ps(x, simd::normal_cdf(x, simd::exp_neg_half_square(x)));
  }
#endif
};

// d gelu / dx = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi).
struct GeluGrad {
  static constexpr double cost = 8;
  static float scalar(float dy, float x) {
    const double xd = x;
    return dy * float(normal_cdf(xd) + xd * kInvSqrt2Pi * std::exp(-0.5 * xd * xd));
  }
#if PYDL_X86
  PYDL_TARGET_AVX2 static __m256 vec(__m256 dy, __m256 x) {
    const __m256 g = simd::exp_neg_half_square(x);
    const __m256 pdf = _mm256_mul_ps(g, _mm256_set1_ps(kInvSqrt2Pi));
    return _mm256_mul_ps(dy, _mm256_fmadd_ps(x, pdf, simd::normal_cdf(x, g)));
  }
#endif
};

// ---- running an activation over an array -----------------------------------

#if PYDL_X86
// Full vectors, then the tail (< 8) through a masked load/store, so the tail
// gets exactly the same arithmetic as the body.
template <class Op>
PYDL_TARGET_AVX2 void map_unary_avx2(float* y, const float* x, index_t n) {
  index_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, Op::vec(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = simd::tail_mask(n - i);
    _mm256_maskstore_ps(y + i, m, Op::vec(_mm256_maskload_ps(x + i, m)));
  }
}

template <class Op>
PYDL_TARGET_AVX2 void map_binary_avx2(float* z, const float* a, const float* b, index_t n) {
  index_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(z + i, Op::vec(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  if (i < n) {
    const __m256i m = simd::tail_mask(n - i);
    _mm256_maskstore_ps(z + i, m, Op::vec(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m)));
  }
}
#endif

template <class Op>
void map_unary(float* y, const float* x, index_t n) {
  parallel_for(n, threads_for(double(n) * Op::cost, kGrain), kCacheLineFloats,
               [=](index_t begin, index_t end) {
#if PYDL_X86
    if (use_avx2()) return map_unary_avx2<Op>(y + begin, x + begin, end - begin);
#endif
    for (index_t i = begin; i < end; ++i) y[i] = Op::scalar(x[i]);
  });
}

template <class Op>
void map_binary(float* z, const float* a, const float* b, index_t n) {
  parallel_for(n, threads_for(double(n) * Op::cost, kGrain), kCacheLineFloats,
               [=](index_t begin, index_t end) {
#if PYDL_X86
    if (use_avx2()) return map_binary_avx2<Op>(z + begin, a + begin, b + begin, end - begin);
#endif
    for (index_t i = begin; i < end; ++i) z[i] = Op::scalar(a[i], b[i]);
  });
}

// ---- row-wise softmax --------------------------------------------------------
// Per row: m = max x, s = sum exp(x - m) (summed into double), then the
// output. Rows are split across threads; a row stays in L1/L2 between passes
// while the next one is prefetched.

// Runs row_fn(r) for every row, on as many threads as rows * cols * cost pays.
template <class RowFn>
void for_each_row(index_t rows, index_t cols, double cost, const RowFn& row_fn) {
  const int threads = threads_for(double(rows) * double(cols) * cost, kGrain);
  parallel_for(rows, threads, 1, [&](index_t begin, index_t end) {
    for (index_t r = begin; r < end; ++r) row_fn(r);
  });
}

// sum dy * y, or sum dy when y is null, in double.
#if PYDL_X86
template <bool kWeighted>
PYDL_TARGET_AVX2 double row_dot_avx2(const float* dy, const float* y, index_t n) {
  simd::WideSum sum;
  index_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(dy + i);
    if constexpr (kWeighted) v = _mm256_mul_ps(v, _mm256_loadu_ps(y + i));
    sum.add(v);
  }
  if (i < n) {
    const __m256i k = simd::tail_mask(n - i);
    __m256 v = _mm256_maskload_ps(dy + i, k);
    if constexpr (kWeighted) v = _mm256_mul_ps(v, _mm256_maskload_ps(y + i, k));
    sum.add(v);
  }
  return sum.total();
}
#endif

double row_dot(const float* dy, const float* y, index_t n) {
#if PYDL_X86
  if (use_avx2()) return y ? row_dot_avx2<true>(dy, y, n) : row_dot_avx2<false>(dy, y, n);
#endif
  double s = 0;
  for (index_t i = 0; i < n; ++i) s += double(dy[i]) * (y ? y[i] : 1.0f);
  return s;
}

}  // namespace

void relu_forward(float* y, const float* x, index_t n) { map_unary<Relu>(y, x, n); }
void relu_backward(float* dx, const float* dy, const float* x, index_t n) { map_binary<ReluGrad>(dx, dy, x, n); }
void sigmoid_forward(float* y, const float* x, index_t n) { map_unary<Sigmoid>(y, x, n); }
void sigmoid_backward(float* dx, const float* dy, const float* y, index_t n) { map_binary<SigmoidGrad>(dx, dy, y, n); }
void tanh_forward(float* y, const float* x, index_t n) { map_unary<Tanh>(y, x, n); }
void tanh_backward(float* dx, const float* dy, const float* y, index_t n) { map_binary<TanhGrad>(dx, dy, y, n); }
void gelu_forward(float* y, const float* x, index_t n) { map_unary<Gelu>(y, x, n); }
void gelu_backward(float* dx, const float* dy, const float* x, index_t n) { map_binary<GeluGrad>(dx, dy, x, n); }

// y = exp(x - m) / s: exps written in the sum pass, then scaled in place.
void softmax_forward(float* y, const float* x, index_t rows, index_t cols) {
  for_each_row(rows, cols, Sigmoid::cost, [=](index_t r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    const float* next = r + 1 < rows ? xr + cols : nullptr;
    const float inv_sum = float(1.0 / row_sum_exp(yr, xr, row_max(xr, cols), cols, next));
    for (index_t c = 0; c < cols; ++c) yr[c] *= inv_sum;
  });
}

// dx = y * (dy - sum(dy * y)) = (dy - d) * y.
void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols) {
  for_each_row(rows, cols, 2, [=](index_t r) {
    const index_t o = r * cols;
    const float d = float(row_dot(dy + o, y + o, cols));
    for (index_t c = 0; c < cols; ++c) dx[o + c] = (dy[o + c] - d) * y[o + c];
  });
}

// y = (x - m) - log s: subtracting m first keeps y exact for large logits.
void log_softmax_forward(float* y, const float* x, index_t rows, index_t cols) {
  for_each_row(rows, cols, Sigmoid::cost, [=](index_t r) {
    const float* xr = x + r * cols;
    const float m = row_max(xr, cols);
    const float* next = r + 1 < rows ? xr + cols : nullptr;
    const float log_sum = float(std::log(row_sum_exp(nullptr, xr, m, cols, next)));
    float* yr = y + r * cols;
    for (index_t c = 0; c < cols; ++c) yr[c] = (xr[c] - m) - log_sum;
  });
}

// dx = dy - exp(y) * sum(dy).
void log_softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols) {
  for_each_row(rows, cols, Sigmoid::cost, [=](index_t r) {
    const index_t o = r * cols;
    const float total = float(row_dot(dy + o, nullptr, cols));
    row_sum_exp(dx + o, y + o, 0.0f, cols);  // dx = exp(y), then dx = dy - total * dx
    for (index_t c = 0; c < cols; ++c) dx[o + c] = dy[o + c] - total * dx[o + c];
  });
}

}  // namespace pydl
