// Elementwise activations and their gradients, and row-wise softmax /
// log-softmax. Each activation is one struct holding its formula twice: the
// portable scalar form (libm) and, on x86, the vector form over a width W
// (simd_math.h: 8 lanes on AVX2, 16 on AVX-512). map_unary / map_binary run
// either form over an array, split across threads when the array is big
// enough to pay for them.
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
  template <class W, class V = typename W::V>
  PYDL_SIMD_INLINE static V vec(V x) { return W::vmax(V(0.0f), x); }
#endif
};

struct ReluGrad {  // dx = dy where x > 0 (or NaN), else 0
  static constexpr double cost = 1;
  static float scalar(float dy, float x) { return x <= 0 ? 0.0f : dy; }
#if PYDL_X86
  template <class W, class V = typename W::V>
  PYDL_SIMD_INLINE static V vec(V dy, V x) { return W::zero_where(W::less_equal(x, 0.0f), dy); }
#endif
};

// sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, e = exp(-|x|)
// (simd::sigmoid is the same formula over vector lanes).
struct Sigmoid {
  static constexpr double cost = 4;
  static float scalar(float x) {
    const float e = std::exp(-std::fabs(x));
    return (x < 0 ? e : 1.0f) / (1.0f + e);
  }
#if PYDL_X86
  template <class W, class V = typename W::V>
  PYDL_SIMD_INLINE static V vec(V x) { return simd::sigmoid<W>(x); }
#endif
};

struct SigmoidGrad {  // dx = dy * y (1 - y)
  static constexpr double cost = 1;
  static float scalar(float dy, float y) { return dy * y * (1.0f - y); }
#if PYDL_X86
  template <class W, class V = typename W::V>
  PYDL_SIMD_INLINE static V vec(V dy, V y) { return (dy * y) * (V(1.0f) - y); }
#endif
};

// tanh: libm, or simd::tanh over vector lanes.
struct Tanh {
  static constexpr double cost = 5;
  static float scalar(float x) { return std::tanh(x); }
#if PYDL_X86
  template <class W, class V = typename W::V>
  PYDL_SIMD_INLINE static V vec(V x) { return simd::tanh<W>(x); }
#endif
};

struct TanhGrad {  // dx = dy * (1 - y^2); (1 - y)(1 + y) or an FMA, since 1 - y*y would cancel
  static constexpr double cost = 1;
  static float scalar(float dy, float y) { return dy * ((1.0f - y) * (1.0f + y)); }
#if PYDL_X86
  template <class W, class V = typename W::V>
  PYDL_SIMD_INLINE static V vec(V dy, V y) { return dy * W::fnmadd(y, y, 1.0f); }
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
  template <class W, class V = typename W::V>
  PYDL_SIMD_INLINE static V vec(V x) {
    return x * simd::normal_cdf<W>(x, simd::exp_neg_half_square<W>(x));
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
  template <class W, class V = typename W::V>
  PYDL_SIMD_INLINE static V vec(V dy, V x) {
    const V g = simd::exp_neg_half_square<W>(x);
    const V pdf = g * V(kInvSqrt2Pi);
    return dy * W::fmadd(x, pdf, simd::normal_cdf<W>(x, g));
  }
#endif
};

// ---- running an activation over an array -----------------------------------

#if PYDL_X86
// Full vectors, then the tail (< width) through a masked load/store, so the
// tail gets exactly the same arithmetic as the body.
template <class W, class Op>
PYDL_SIMD_INLINE void map_unary_vector(float* y, const float* x, index_t n) {
  index_t i = 0;
  for (; i + W::width <= n; i += W::width) W::store(y + i, Op::template vec<W>(W::load(x + i)));
  if (i < n) {
    const typename W::Mask m = W::tail(n - i);
    W::store(y + i, m, Op::template vec<W>(W::load(x + i, m)));
  }
}

template <class W, class Op>
PYDL_SIMD_INLINE void map_binary_vector(float* z, const float* a, const float* b, index_t n) {
  index_t i = 0;
  for (; i + W::width <= n; i += W::width)
    W::store(z + i, Op::template vec<W>(W::load(a + i), W::load(b + i)));
  if (i < n) {
    const typename W::Mask m = W::tail(n - i);
    W::store(z + i, m, Op::template vec<W>(W::load(a + i, m), W::load(b + i, m)));
  }
}

// Each path's entry points: the whole loop compiled for its instruction set.
template <class Op>
PYDL_TARGET_AVX2 PYDL_FLATTEN void map_unary_avx2(float* y, const float* x, index_t n) {
  map_unary_vector<simd::Ymm, Op>(y, x, n);
}
template <class Op>
PYDL_TARGET_AVX512 PYDL_FLATTEN void map_unary_avx512(float* y, const float* x, index_t n) {
  map_unary_vector<simd::Zmm, Op>(y, x, n);
}
template <class Op>
PYDL_TARGET_AVX2 PYDL_FLATTEN void map_binary_avx2(float* z, const float* a, const float* b,
                                                  index_t n) {
  map_binary_vector<simd::Ymm, Op>(z, a, b, n);
}
template <class Op>
PYDL_TARGET_AVX512 PYDL_FLATTEN void map_binary_avx512(float* z, const float* a, const float* b,
                                                      index_t n) {
  map_binary_vector<simd::Zmm, Op>(z, a, b, n);
}
#endif

template <class Op>
void map_unary(float* y, const float* x, index_t n) {
  parallel_for(n, threads_for(double(n) * Op::cost, kGrain), kCacheLineFloats,
               [=](index_t begin, index_t end) {
#if PYDL_X86
    if (use_avx512()) return map_unary_avx512<Op>(y + begin, x + begin, end - begin);
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
    if (use_avx512()) return map_binary_avx512<Op>(z + begin, a + begin, b + begin, end - begin);
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
template <class W, bool kWeighted>
PYDL_SIMD_INLINE double row_dot_vector(const float* dy, const float* y, index_t n) {
  typename W::WideSum sum;
  index_t i = 0;
  for (; i + W::width <= n; i += W::width) {
    typename W::V v = W::load(dy + i);
    if constexpr (kWeighted) v = v * W::load(y + i);
    sum.add(v);
  }
  if (i < n) {
    const typename W::Mask k = W::tail(n - i);
    typename W::V v = W::load(dy + i, k);
    if constexpr (kWeighted) v = v * W::load(y + i, k);
    sum.add(v);
  }
  return sum.total();
}

PYDL_TARGET_AVX2 PYDL_FLATTEN double row_dot_avx2(const float* dy, const float* y, index_t n) {
  return y ? row_dot_vector<simd::Ymm, true>(dy, y, n) : row_dot_vector<simd::Ymm, false>(dy, y, n);
}
PYDL_TARGET_AVX512 PYDL_FLATTEN double row_dot_avx512(const float* dy, const float* y, index_t n) {
  return y ? row_dot_vector<simd::Zmm, true>(dy, y, n) : row_dot_vector<simd::Zmm, false>(dy, y, n);
}
#endif

double row_dot(const float* dy, const float* y, index_t n) {
#if PYDL_X86
  if (use_avx512()) return row_dot_avx512(dy, y, n);
  if (use_avx2()) return row_dot_avx2(dy, y, n);
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
