// Recurrent layers over a whole sequence, one direction (shapes in rnn.h).
//
// Forward:   A = X W_ih^T                      one GEMM over all T*B rows
//            per step: A_t += h_prev W_hh^T    one GEMM (B x G*H)
//                      h_t = cell(A_t + b)     one fused gate kernel
// Backward:  per step (last to first): dA_t = fused gate backward(dh_t, ...),
//            dh_prev = dA_t W_hh               one GEMM (B x H)
//            then, over all steps at once: dW_hh = sum_t dA_t^T h_prev(t),
//            dW_ih = dA^T X, dX = dA W_ih (one GEMM each), db = column sums of dA.
// GRU keeps the hidden part of its n gate apart (n = tanh(a_n + r * (W_hn h + b_hn))),
// so its per-step GEMM writes a separate (B, 3H) buffer, and its input and
// hidden gate gradients differ in the n block.
//
// Each gate kernel is written once, as a functor over "lanes": one float
// (portable path), or 8 / 16 floats in a ymm / zmm register (AVX2 / AVX-512
// paths, with a masked tail so the last lanes of a row get the same arithmetic).
#include "rnn.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "gemm.h"
#include "parallel.h"
#include "simd_math.h"

namespace pydl {
namespace {

#define PYDL_ALWAYS_INLINE inline __attribute__((always_inline))

// Gate-kernel elements per thread below which a second thread costs more than it
// saves (each element does a few exp's).
constexpr double kGateGrain = 1 << 13;
// Column-sum elements per thread, likewise (one add each).
constexpr double kSumGrain = 1 << 16;

// ---- lanes: the arithmetic the gate kernels are written in -------------------

// sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, e = exp(-|x|).
inline float sigmoid_of(float x) {
  const float e = std::exp(-std::fabs(x));
  return (x < 0 ? e : 1.0f) / (1.0f + e);
}
inline float tanh_of(float x) { return std::tanh(x); }
inline float relu_of(float x) { return x < 0 ? 0.0f : x; }
inline float positive_of(float x) { return x > 0 ? 1.0f : 0.0f; }  // relu'(x)

struct ScalarLanes {
  float load(const float* p) const { return *p; }
  void store(float* p, float v) const { *p = v; }
};

#if PYDL_X86
// The activations on each vector type (simd_math.h, one template over the width).
using simd::F16;
using simd::F8;
PYDL_TARGET_AVX2 inline F8 sigmoid_of(F8 x) { return simd::sigmoid<simd::Ymm>(x); }
PYDL_TARGET_AVX2 inline F8 tanh_of(F8 x) { return simd::tanh<simd::Ymm>(x); }
PYDL_TARGET_AVX2 inline F8 relu_of(F8 x) { return simd::Ymm::vmax(0.0f, x); }
PYDL_TARGET_AVX2 inline F8 positive_of(F8 x) {
  return simd::Ymm::keep_where(simd::Ymm::greater(x, 0.0f), 1.0f);
}
PYDL_TARGET_AVX512 inline F16 sigmoid_of(F16 x) { return simd::sigmoid<simd::Zmm>(x); }
PYDL_TARGET_AVX512 inline F16 tanh_of(F16 x) { return simd::tanh<simd::Zmm>(x); }
PYDL_TARGET_AVX512 inline F16 relu_of(F16 x) { return simd::Zmm::vmax(0.0f, x); }
PYDL_TARGET_AVX512 inline F16 positive_of(F16 x) {
  return simd::Zmm::keep_where(simd::Zmm::greater(x, 0.0f), 1.0f);
}

template <class W>
struct FullLanes {
  PYDL_ALWAYS_INLINE typename W::V load(const float* p) const { return W::load(p); }
  PYDL_ALWAYS_INLINE void store(float* p, typename W::V v) const { W::store(p, v); }
};

template <class W>
struct TailLanes {  // the first k < width lanes of a row's end
  typename W::Mask mask;
  PYDL_ALWAYS_INLINE typename W::V load(const float* p) const { return W::load(p, mask); }
  PYDL_ALWAYS_INLINE void store(float* p, typename W::V v) const { W::store(p, mask, v); }
};

template <class W, class Step>
PYDL_ALWAYS_INLINE void run_rows_vector(const Step& step, index_t b0, index_t b1, index_t H) {
  const index_t full = H / W::width * W::width;
  const TailLanes<W> tail{W::tail(H - full)};
  for (index_t b = b0; b < b1; ++b) {
    for (index_t j = 0; j < full; j += W::width) step(FullLanes<W>{}, b, j);
    if (full < H) step(tail, b, full);
  }
}

template <class Step>
PYDL_TARGET_AVX2 PYDL_FLATTEN void run_rows_avx2(const Step& step, index_t b0, index_t b1,
                                                index_t H) {
  run_rows_vector<simd::Ymm>(step, b0, b1, H);
}
template <class Step>
PYDL_TARGET_AVX512 PYDL_FLATTEN void run_rows_avx512(const Step& step, index_t b0, index_t b1,
                                                    index_t H) {
  run_rows_vector<simd::Zmm>(step, b0, b1, H);
}
#endif

template <class Step>
void run_rows_portable(const Step& step, index_t b0, index_t b1, index_t H) {
  for (index_t b = b0; b < b1; ++b)
    for (index_t j = 0; j < H; ++j) step(ScalarLanes{}, b, j);
}

// Runs a gate kernel step(lanes, b, j) over B rows of H units, rows split across
// threads when there are enough to pay for them.
template <class Step>
void run_gate_kernel(const Step& step, index_t B, index_t H) {
  const int threads = threads_for(double(B) * double(H), kGateGrain);
  parallel_for(B, threads, 1, [&](index_t b0, index_t b1) {
#if PYDL_X86
    if (use_avx512()) return run_rows_avx512(step, b0, b1, H);
    if (use_avx2()) return run_rows_avx2(step, b0, b1, H);
#endif
    run_rows_portable(step, b0, b1, H);
  });
}

// ---- gate kernels ----------------------------------------------------------------
// Row b of every (B, .) buffer starts at b * (its width); j is the hidden unit.

// Elman RNN: h = act(a + b), in place on the pre-activation row (width H).
template <bool Relu>
struct RnnForward {
  float* h;
  const float* bias;
  index_t H;
  template <class L>
  PYDL_ALWAYS_INLINE void operator()(const L& l, index_t b, index_t j) const {
    float* hp = h + b * H + j;
    const auto a = l.load(hp) + l.load(bias + j);
    if constexpr (Relu) l.store(hp, relu_of(a));
    else l.store(hp, tanh_of(a));
  }
};

// dA = (dy + dh_next) * act'(h): 1 - h^2 for tanh, [h > 0] for relu.
template <bool Relu>
struct RnnBackward {
  float* dgates;
  const float* h;
  const float* dy;
  const float* dh_next;
  index_t H;
  template <class L>
  PYDL_ALWAYS_INLINE void operator()(const L& l, index_t b, index_t j) const {
    const index_t k = b * H + j;
    const auto dh = l.load(dy + k) + l.load(dh_next + k);
    const auto hv = l.load(h + k);
    if constexpr (Relu) l.store(dgates + k, dh * positive_of(hv));
    else l.store(dgates + k, dh * (1.0f - hv * hv));
  }
};

// LSTM: with a = A_t + b (row of 4H: i, f, g, o blocks),
//   i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g), c = f c_prev + i g, h = o tanh(c).
// The gate row is overwritten by the activated gates (saved for backward).
struct LstmForward {
  float* gates;
  float* c;
  float* h;
  const float* c_prev;
  const float* bias;
  index_t H;
  template <class L>
  PYDL_ALWAYS_INLINE void operator()(const L& l, index_t b, index_t j) const {
    float* a = gates + b * 4 * H + j;
    const float* bj = bias + j;
    const auto i = sigmoid_of(l.load(a) + l.load(bj));
    const auto f = sigmoid_of(l.load(a + H) + l.load(bj + H));
    const auto g = tanh_of(l.load(a + 2 * H) + l.load(bj + 2 * H));
    const auto o = sigmoid_of(l.load(a + 3 * H) + l.load(bj + 3 * H));
    const index_t k = b * H + j;
    const auto ct = f * l.load(c_prev + k) + i * g;
    l.store(a, i);
    l.store(a + H, f);
    l.store(a + 2 * H, g);
    l.store(a + 3 * H, o);
    l.store(c + k, ct);
    l.store(h + k, o * tanh_of(ct));
  }
};

// LSTM backward, dh = dy + dh_next, dc = dc_next + dh o (1 - tanh(c)^2):
//   do = dh tanh(c), di = dc g, df = dc c_prev, dg = dc i, dc_prev = dc f,
// each gate gradient times its activation's derivative (s(1-s) or 1-g^2).
// `dc` holds dc_next on entry and dc_prev on exit.
struct LstmBackward {
  float* dgates;
  float* dc;
  const float* gates;
  const float* c;
  const float* c_prev;
  const float* dy;
  const float* dh_next;
  index_t H;
  template <class L>
  PYDL_ALWAYS_INLINE void operator()(const L& l, index_t b, index_t j) const {
    const float* s = gates + b * 4 * H + j;
    float* d = dgates + b * 4 * H + j;
    const index_t k = b * H + j;
    const auto i = l.load(s), f = l.load(s + H), g = l.load(s + 2 * H), o = l.load(s + 3 * H);
    const auto tc = tanh_of(l.load(c + k));
    const auto dh = l.load(dy + k) + l.load(dh_next + k);
    const auto dct = l.load(dc + k) + dh * o * (1.0f - tc * tc);
    l.store(d, dct * g * i * (1.0f - i));
    l.store(d + H, dct * l.load(c_prev + k) * f * (1.0f - f));
    l.store(d + 2 * H, dct * i * (1.0f - g * g));
    l.store(d + 3 * H, dh * tc * o * (1.0f - o));
    l.store(dc + k, dct * f);
  }
};

// GRU, with x-part A_t (row of 4H: r, z, n blocks, 4th block free) and hidden part
// gh = h_prev W_hh^T (row of 3H):
//   r = sigmoid(a_r + b_ir + gh_r + b_hr), z likewise, hn = gh_n + b_hn,
//   n = tanh(a_n + b_in + r hn), h = (1 - z) n + z h_prev = n + z (h_prev - n).
// The gate row is overwritten by (r, z, n, hn), saved for backward.
struct GruForward {
  float* gates;
  float* h;
  const float* gh;
  const float* h_prev;
  const float* b_ih;
  const float* b_hh;
  index_t H;
  template <class L>
  PYDL_ALWAYS_INLINE void operator()(const L& l, index_t b, index_t j) const {
    float* a = gates + b * 4 * H + j;
    const float* g = gh + b * 3 * H + j;
    const float *bi = b_ih + j, *bh = b_hh + j;
    const auto r = sigmoid_of(l.load(a) + l.load(bi) + l.load(g) + l.load(bh));
    const auto z = sigmoid_of(l.load(a + H) + l.load(bi + H) + l.load(g + H) + l.load(bh + H));
    const auto hn = l.load(g + 2 * H) + l.load(bh + 2 * H);
    const auto n = tanh_of(l.load(a + 2 * H) + l.load(bi + 2 * H) + r * hn);
    const index_t k = b * H + j;
    l.store(a, r);
    l.store(a + H, z);
    l.store(a + 2 * H, n);
    l.store(a + 3 * H, hn);
    l.store(h + k, n + z * (l.load(h_prev + k) - n));
  }
};

// GRU backward, dh = dy + dh_carry:
//   dn' = dh (1 - z)(1 - n^2), dz' = dh (h_prev - n) z (1 - z),
//   dr' = dn' hn r (1 - r), d(hn) = dn' r, and dh_prev's direct part dh z.
// dgates row (4H): dr', dz', d(hn), dn' -- the first 3H blocks are the hidden
// gates' gradient (rows of W_hh), blocks 0, 1, 3 the input gates' (rows of W_ih).
// dh_carry holds dh_next on entry and dh z on exit.
struct GruBackward {
  float* dgates;
  float* dh_carry;
  const float* gates;
  const float* h_prev;
  const float* dy;
  index_t H;
  template <class L>
  PYDL_ALWAYS_INLINE void operator()(const L& l, index_t b, index_t j) const {
    const float* s = gates + b * 4 * H + j;
    float* d = dgates + b * 4 * H + j;
    const index_t k = b * H + j;
    const auto r = l.load(s), z = l.load(s + H), n = l.load(s + 2 * H), hn = l.load(s + 3 * H);
    const auto dh = l.load(dy + k) + l.load(dh_carry + k);
    const auto dn = dh * (1.0f - z) * (1.0f - n * n);
    const auto dz = dh * (l.load(h_prev + k) - n) * z * (1.0f - z);
    l.store(d, dn * hn * r * (1.0f - r));
    l.store(d + H, dz);
    l.store(d + 2 * H, dn * r);
    l.store(d + 3 * H, dn);
    l.store(dh_carry + k, dh * z);
  }
};

// ---- helpers ---------------------------------------------------------------------

// out[j] = sum over rows of a[r * lda + j], j < cols; column blocks across threads.
void column_sums(float* out, const float* a, index_t rows, index_t cols, index_t lda) {
  const int threads = threads_for(double(rows) * double(cols), kSumGrain);
  parallel_for(cols, threads, 16, [&](index_t c0, index_t c1) {
    std::fill(out + c0, out + c1, 0.0f);
    for (index_t r = 0; r < rows; ++r) {
      const float* row = a + r * lda;
      for (index_t j = c0; j < c1; ++j) out[j] += row[j];
    }
  });
}

}  // namespace

void rnn_layer_forward(RnnMode mode, float* y, float* c, float* saved, const float* x,
                       const float* h0, const float* c0, const float* w_ih, const float* w_hh,
                       const float* b_ih, const float* b_hh, index_t T, index_t B, index_t I,
                       index_t H, bool reverse) {
  check_rnn_layer_forward(mode, y, c, saved, x, h0, c0, w_ih, w_hh, b_ih, b_hh, T, B, I, H);
  const bool gru = mode == RnnMode::gru;
  const index_t GH = rnn_gate_count(mode) * H, ld = rnn_gate_width(mode, H), BH = B * H;
  float* pre = rnn_saved_width(mode, H) == 0 ? y : saved;  // pre-activations, rows of ld

  // Biases: GRU keeps both (b_hn sits inside r * (...)); the others add them together.
  Workspace<float> bias_ws(2 * GH);
  float *bias_i = bias_ws.get(), *bias_h = bias_ws.get() + GH;
  for (index_t j = 0; j < GH; ++j) {
    bias_i[j] = b_ih ? b_ih[j] : 0.0f;
    bias_h[j] = b_hh ? b_hh[j] : 0.0f;
    if (!gru) bias_i[j] += bias_h[j];
  }

  sgemm(false, true, T * B, GH, I, 1.0f, x, I, w_ih, I, 0.0f, pre, ld);
  Workspace<float> gh(gru ? B * GH : 1);
  for (index_t s = 0; s < T; ++s) {
    const auto [t, tp] = rnn_step_times(s, T, reverse);
    const float* h_prev = s == 0 ? h0 : y + tp * BH;
    float* pre_t = pre + t * B * ld;
    float* y_t = y + t * BH;
    switch (mode) {
      case RnnMode::rnn_tanh:
      case RnnMode::rnn_relu:
        sgemm(false, true, B, H, H, 1.0f, h_prev, H, w_hh, H, 1.0f, y_t, H);
        if (mode == RnnMode::rnn_relu) run_gate_kernel(RnnForward<true>{y_t, bias_i, H}, B, H);
        else run_gate_kernel(RnnForward<false>{y_t, bias_i, H}, B, H);
        break;
      case RnnMode::lstm:
        sgemm(false, true, B, GH, H, 1.0f, h_prev, H, w_hh, H, 1.0f, pre_t, ld);
        run_gate_kernel(LstmForward{pre_t, c + t * BH, y_t, s == 0 ? c0 : c + tp * BH, bias_i, H},
                        B, H);
        break;
      case RnnMode::gru:
        sgemm(false, true, B, GH, H, 1.0f, h_prev, H, w_hh, H, 0.0f, gh.get(), GH);
        run_gate_kernel(GruForward{pre_t, y_t, gh.get(), h_prev, bias_i, bias_h, H}, B, H);
        break;
    }
  }
}

void rnn_layer_backward(RnnMode mode, float* dx, float* dh0, float* dc0, float* dw_ih,
                        float* dw_hh, float* db_ih, float* db_hh, const float* dy,
                        const float* dc_last, const float* x, const float* h0, const float* c0,
                        const float* w_ih, const float* w_hh, const float* y, const float* c,
                        const float* saved, index_t T, index_t B, index_t I, index_t H,
                        bool reverse) {
  check_rnn_layer_backward(mode, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dy, x, h0, c0, w_ih,
                           w_hh, y, c, saved, T, B, I, H);
  const bool lstm = mode == RnnMode::lstm, gru = mode == RnnMode::gru;
  const index_t GH = rnn_gate_count(mode) * H, ld = rnn_gate_width(mode, H), BH = B * H;

  Workspace<float> dgates_ws(T * B * ld);
  float* dgates = dgates_ws.get();
  // dh0 and dc0 carry the gradient from step to step and end as dh_0, dc_0.
  std::memset(dh0, 0, sizeof(float) * BH);
  if (lstm) {
    if (dc_last) std::memcpy(dc0, dc_last, sizeof(float) * BH);
    else std::memset(dc0, 0, sizeof(float) * BH);
  }
  for (index_t s = T - 1; s >= 0; --s) {
    const auto [t, tp] = rnn_step_times(s, T, reverse);
    float* dg = dgates + t * B * ld;
    const float* dy_t = dy + t * BH;
    const float* y_t = y + t * BH;
    switch (mode) {
      case RnnMode::rnn_tanh:
        run_gate_kernel(RnnBackward<false>{dg, y_t, dy_t, dh0, H}, B, H);
        break;
      case RnnMode::rnn_relu:
        run_gate_kernel(RnnBackward<true>{dg, y_t, dy_t, dh0, H}, B, H);
        break;
      case RnnMode::lstm:
        run_gate_kernel(LstmBackward{dg, dc0, saved + t * B * ld, c + t * BH,
                                     s == 0 ? c0 : c + tp * BH, dy_t, dh0, H}, B, H);
        break;
      case RnnMode::gru:
        run_gate_kernel(GruBackward{dg, dh0, saved + t * B * ld, s == 0 ? h0 : y + tp * BH,
                                    dy_t, H}, B, H);
        break;
    }
    // dh_prev = dA_t W_hh (+ the GRU's direct path dh z, already in dh0).
    sgemm(false, false, B, H, GH, 1.0f, dg, ld, w_hh, H, gru ? 1.0f : 0.0f, dh0, H);
  }

  // dW_hh = sum_t dA_t^T h_prev(t): steps 1.. read h_prev from y (one GEMM over
  // T-1 stacked steps, the rows of dA and y offset by one step), step 0 from h0.
  const float* dg_later = reverse ? dgates : dgates + B * ld;
  const float* y_prev = reverse ? y + BH : y;
  sgemm(true, false, GH, H, (T - 1) * B, 1.0f, dg_later, ld, y_prev, H, 0.0f, dw_hh, H);
  const float* dg_first = dgates + (reverse ? T - 1 : 0) * B * ld;
  sgemm(true, false, GH, H, B, 1.0f, dg_first, ld, h0, H, 1.0f, dw_hh, H);

  // The input gates' gradient: the first GH columns of dA, except for the GRU,
  // whose n block comes from column block 3 (dn') rather than 2 (d(hn)).
  struct Block { index_t column, rows; };
  const Block whole[] = {{0, GH}};
  const Block gru_blocks[] = {{0, 2 * H}, {3 * H, H}};
  const Block* blocks = gru ? gru_blocks : whole;
  const int block_count = gru ? 2 : 1;
  index_t row = 0;  // first row of W_ih the block belongs to
  for (int k = 0; k < block_count; ++k) {
    const Block& bk = blocks[k];
    sgemm(true, false, bk.rows, I, T * B, 1.0f, dgates + bk.column, ld, x, I, 0.0f,
          dw_ih + row * I, I);
    if (dx)
      sgemm(false, false, T * B, I, bk.rows, 1.0f, dgates + bk.column, ld, w_ih + row * I, I,
            k == 0 ? 0.0f : 1.0f, dx, I);
    if (db_ih) column_sums(db_ih + row, dgates + bk.column, T * B, bk.rows, ld);
    row += bk.rows;
  }
  if (db_hh) {
    if (gru) column_sums(db_hh, dgates, T * B, GH, ld);
    else std::memcpy(db_hh, db_ih, sizeof(float) * GH);
  }
}

}  // namespace pydl
