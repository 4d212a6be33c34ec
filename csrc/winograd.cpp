// Winograd F(2x2, 3x3): 3x3 convolution, stride 1, dilation 1, one group.
//
// Each 2x2 block of output (a "tile") comes from the 4x4 input patch d under it:
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A        (.) elementwise, 16 products
// instead of 36 multiplies per tile and channel pair. With the 16 positions e
// of the 4x4 transformed tile as separate matrices, the sum over input
// channels is a GEMM per e:
//   U_e (C_out x C_in) = (G g G^T)_e   V_e (C_in x T) = (B^T d B)_e   M_e = U_e V_e
// and the output transform reads the 16 M_e. Tiles run in chunks of whole tile
// rows (several images when planes are small) sized so V and M stay in cache:
// no buffer ever holds the whole batch. Threads take whole chunks, as conv.cpp
// does with its col tiles; with fewer chunks than threads, the GEMMs thread.
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
// Grad-input of such a convolution is the same kind of convolution: dY padded
// by 2 - pad, with the weights flipped in both axes and C_in, C_out swapped.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <cstdio>

#include "conv.h"
#include "gemm.h"
#include "parallel.h"

#if PYDL_X86
#include <immintrin.h>
#endif

namespace pydl {

namespace {

// V and M of one chunk together: 1 MiB, in L2/L3 beside the GEMM's packed
// blocks, while a chunk still gives each GEMM ~100+ columns at 64 channels.
constexpr index_t kChunkFloats = index_t(1) << 18;
constexpr double kFlopsPerThread = 2e6;

// One stride-1 3x3 convolution in the Winograd path's terms (forward, or the
// grad-input convolution): input (N, C_in, H, W) padded by pad_h/pad_w gives
// output (N, C_out, H_out, W_out).
struct WinoShape {
  index_t N, C_in, H, W, C_out, pad_h, pad_w, H_out, W_out;
  index_t tiles_h() const { return (H_out + 1) / 2; }
  index_t tiles_w() const { return (W_out + 1) / 2; }
};

WinoShape forward_shape(const Conv2dShape& s) {
  return {s.N, s.C_in, s.H, s.W, s.C_out, s.pad_h, s.pad_w, s.H_out(), s.W_out()};
}

// grad-input: "input" dY (N, C_out, H_out, W_out), "output" dX (N, C_in, H, W).
WinoShape backward_input_shape(const Conv2dShape& s) {
  return {s.N, s.C_out, s.H_out(), s.W_out(), s.C_in, 2 - s.pad_h, 2 - s.pad_w, s.H, s.W};
}

// U[e][co][ci] = (G g G^T)[e] for g = weight[co][ci] (3x3); `flipped` reads
// instead g[i][j] = weight[ci][co][2-i][2-j] (the grad-input convolution,
// whose co runs over the forward's input channels).
void transform_weights(float* U, const float* weight, index_t C_out, index_t C_in, bool flipped) {
  for (index_t co = 0; co < C_out; ++co)
    for (index_t ci = 0; ci < C_in; ++ci) {
      float g[3][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
          g[i][j] = flipped ? weight[((ci * C_out + co) * 3 + 2 - i) * 3 + 2 - j]
                            : weight[((co * C_in + ci) * 3 + i) * 3 + j];
      float gg[4][3];  // G g
      for (int j = 0; j < 3; ++j) {
        gg[0][j] = g[0][j];
        gg[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        gg[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        gg[3][j] = g[2][j];
      }
      for (int i = 0; i < 4; ++i) {  // (G g) G^T
        float* u = U + (i * 4) * C_out * C_in + co * C_in + ci;
        const index_t step = C_out * C_in;  // from e to e + 1
        u[0] = gg[i][0];
        u[step] = 0.5f * (gg[i][0] + gg[i][1] + gg[i][2]);
        u[2 * step] = 0.5f * (gg[i][0] - gg[i][1] + gg[i][2]);
        u[3 * step] = gg[i][2];
      }
    }
}

// Row buffers hold 2 tiles_w + 2 columns, rounded up so the AVX2 row kernels
// read whole 8-tile blocks (16 + 2 columns each) without bounds checks.
index_t row_width(index_t tw) { return 16 * ((tw + 7) / 8) + 2; }

// A^T M A for one tile row: m[e][x] (e = 4k + l) of tiles [0, tw) to the output
// rows y0 and y1 (2 tw columns), plus `shift`.
using OutputRow = void (*)(const float* const m[16], index_t tw, float shift, float* y0,
                           float* y1);

// B across one row t of B^T d, for tiles [0, tw): tile x reads t[2x .. 2x+3] and
// writes (d0-d2, d1+d2, d2-d1, d1-d3) to v[0..3][x].
void input_row_portable(const float* t, index_t tw, float* const v[4]) {
  for (index_t x = 0; x < tw; ++x) {
    const float d0 = t[2 * x], d1 = t[2 * x + 1], d2 = t[2 * x + 2], d3 = t[2 * x + 3];
    v[0][x] = d0 - d2;
    v[1][x] = d1 + d2;
    v[2][x] = d2 - d1;
    v[3][x] = d1 - d3;
  }
}

void output_row_portable(const float* const m[16], index_t tw, float shift, float* y0, float* y1) {
  for (index_t x = 0; x < tw; ++x) {
    float s0[4], s1[4];  // (M A) row k: (m0+m1+m2, m1-m2-m3)
    for (int k = 0; k < 4; ++k) {
      const float a = m[4 * k][x], b = m[4 * k + 1][x], c = m[4 * k + 2][x], d = m[4 * k + 3][x];
      s0[k] = a + b + c;
      s1[k] = b - c - d;
    }
    y0[2 * x] = s0[0] + s0[1] + s0[2] + shift;
    y0[2 * x + 1] = s1[0] + s1[1] + s1[2] + shift;
    y1[2 * x] = s0[1] - s0[2] - s0[3] + shift;
    y1[2 * x + 1] = s1[1] - s1[2] - s1[3] + shift;
  }
}

#if PYDL_X86
// (even, odd) elements of the 16 floats at p: (p[0], p[2], ..., p[14]), (p[1], ..., p[15]).
PYDL_TARGET_AVX2 inline void deinterleave(const float* p, __m256& even, __m256& odd) {
  const __m256 lo = _mm256_loadu_ps(p), hi = _mm256_loadu_ps(p + 8);
  // Within each 128-bit lane, then the lanes' 64-bit halves put in order.
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(
      _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(
      _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
}

// 8 tiles at a time: d0, d1 are the even and odd columns from 2x, d2, d3 from
// 2x + 2. A last, partial block writes whole vectors: up to 7 floats past v[l] + tw.
PYDL_TARGET_AVX2 void input_row_avx2(const float* t, index_t tw, float* const v[4]) {
  for (index_t x = 0; x < tw; x += 8) {
    __m256 d0, d1, d2, d3;
    deinterleave(t + 2 * x, d0, d1);
    deinterleave(t + 2 * x + 2, d2, d3);
    const __m256 r[4] = {_mm256_sub_ps(d0, d2), _mm256_add_ps(d1, d2), _mm256_sub_ps(d2, d1),
                         _mm256_sub_ps(d1, d3)};
    for (int l = 0; l < 4; ++l) _mm256_storeu_ps(v[l] + x, r[l]);
  }
}

// 8 tiles at a time; the pairs (y[2x], y[2x+1]) are interleaved back into
// rows. m rows are read up to 7 floats past tw (the caller's buffers allow it).
PYDL_TARGET_AVX2 void output_row_avx2(const float* const m[16], index_t tw, float shift,
                                      float* y0, float* y1) {
  const __m256 b = _mm256_set1_ps(shift);
  for (index_t x = 0; x < tw; x += 8) {
    __m256 s0[4], s1[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 m0 = _mm256_loadu_ps(m[4 * k] + x), m1 = _mm256_loadu_ps(m[4 * k + 1] + x),
                   m2 = _mm256_loadu_ps(m[4 * k + 2] + x), m3 = _mm256_loadu_ps(m[4 * k + 3] + x);
      s0[k] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
      s1[k] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
    }
    const __m256 y00 = _mm256_add_ps(_mm256_add_ps(s0[0], s0[1]), _mm256_add_ps(s0[2], b));
    const __m256 y01 = _mm256_add_ps(_mm256_add_ps(s1[0], s1[1]), _mm256_add_ps(s1[2], b));
    const __m256 y10 = _mm256_sub_ps(_mm256_sub_ps(s0[1], s0[2]), _mm256_sub_ps(s0[3], b));
    const __m256 y11 = _mm256_sub_ps(_mm256_sub_ps(s1[1], s1[2]), _mm256_sub_ps(s1[3], b));
    const __m256 a_lo = _mm256_unpacklo_ps(y00, y01), a_hi = _mm256_unpackhi_ps(y00, y01);
    const __m256 c_lo = _mm256_unpacklo_ps(y10, y11), c_hi = _mm256_unpackhi_ps(y10, y11);
    _mm256_storeu_ps(y0 + 2 * x, _mm256_permute2f128_ps(a_lo, a_hi, 0x20));
    _mm256_storeu_ps(y0 + 2 * x + 8, _mm256_permute2f128_ps(a_lo, a_hi, 0x31));
    _mm256_storeu_ps(y1 + 2 * x, _mm256_permute2f128_ps(c_lo, c_hi, 0x20));
    _mm256_storeu_ps(y1 + 2 * x + 8, _mm256_permute2f128_ps(c_lo, c_hi, 0x31));
  }
}
#endif

OutputRow output_row() {
#if PYDL_X86
  if (use_avx2()) return output_row_avx2;
#endif
  return output_row_portable;
}

// V_e[c][t] for the chunk's tile rows [u0, u1) (u = n * tiles_h + tile row),
// V_e rows ldv apart (at least (u1 - u0) tiles_w + 8: a row kernel's last
// block may write up to 7 tiles past its row), V_e at V + e * C_in * ldv.
// Per channel and tile row: B^T down the four input rows under it, into
// `rows` (4 x row_width, zero where the padding is), then B across each row.
// B^T down four rows d0..d3 of n columns: (d0-d2, d1+d2, d2-d1, d1-d3).
inline __attribute__((always_inline)) void input_columns(
    float* __restrict r0, float* __restrict r1, float* __restrict r2, float* __restrict r3,
    const float* __restrict d0, const float* __restrict d1, const float* __restrict d2,
    const float* __restrict d3, index_t n) {
  for (index_t x = 0; x < n; ++x) {
    r0[x] = d0[x] - d2[x];
    r1[x] = d1[x] + d2[x];
    r2[x] = d2[x] - d1[x];
    r3[x] = d1[x] - d3[x];
  }
}

template <bool kAvx2>
inline __attribute__((always_inline)) void input_transform_body(
    float* V, index_t ldv, const float* in, const WinoShape& w, index_t u0, index_t u1,
    float* rows, const float* zeros) {
  const index_t tw = w.tiles_w(), th = w.tiles_h(), width = row_width(tw);
  float* r[4] = {rows, rows + width, rows + 2 * width, rows + 3 * width};
  // Input columns [0, hi) land at padded columns [pad_w, hi + pad_w); the rest is zero.
  const index_t hi = std::min<index_t>(w.W, 2 * tw + 2 - w.pad_w);
  for (int k = 0; k < 4; ++k) std::fill(r[k], r[k] + width, 0.0f);
  for (index_t c = 0; c < w.C_in; ++c)
    for (index_t u = u0; u < u1; ++u) {
      const index_t n = u / th, oh = 2 * (u % th);
      const float* plane = in + (n * w.C_in + c) * w.H * w.W;
      const float* d[4];  // input rows, or zeros above and below the plane
      for (int k = 0; k < 4; ++k) {
        const index_t ih = oh - w.pad_h + k;
        d[k] = ih >= 0 && ih < w.H ? plane + ih * w.W : zeros;
      }
      input_columns(r[0] + w.pad_w, r[1] + w.pad_w, r[2] + w.pad_w, r[3] + w.pad_w, d[0], d[1],
                    d[2], d[3], hi);
      const index_t col = (u - u0) * tw;
      for (int k = 0; k < 4; ++k) {
        float* const v[4] = {V + ((k * 4 + 0) * w.C_in + c) * ldv + col,
                             V + ((k * 4 + 1) * w.C_in + c) * ldv + col,
                             V + ((k * 4 + 2) * w.C_in + c) * ldv + col,
                             V + ((k * 4 + 3) * w.C_in + c) * ldv + col};
#if PYDL_X86
        if (kAvx2) {
          input_row_avx2(r[k], tw, v);
          continue;
        }
#endif
        input_row_portable(r[k], tw, v);
      }
    }
}

#if PYDL_X86
PYDL_TARGET_AVX2 void input_transform_avx2(float* V, index_t ldv, const float* in,
                                           const WinoShape& w, index_t u0, index_t u1,
                                           float* rows, const float* zeros) {
  input_transform_body<true>(V, ldv, in, w, u0, u1, rows, zeros);
}
#endif

void input_transform(float* V, index_t ldv, const float* in, const WinoShape& w, index_t u0,
                     index_t u1, float* rows, const float* zeros) {
#if PYDL_X86
  if (use_avx2()) return input_transform_avx2(V, ldv, in, w, u0, u1, rows, zeros);
#endif
  input_transform_body<false>(V, ldv, in, w, u0, u1, rows, zeros);
}

// out = A^T M A (+ bias) for the chunk's tile rows [u0, u1), M_e at M + e * C_out * ld.
// The 2x2 results of a tile row go through `rows` (two rows of 2 tiles_w + 14
// columns) and are clipped to the plane at its odd edges.
void output_transform(float* out, const float* M, index_t ld, const float* bias,
                      const WinoShape& w, index_t u0, index_t u1, float* rows) {
  const index_t tw = w.tiles_w(), th = w.tiles_h();
  const OutputRow row = output_row();
  float* y0 = rows;
  float* y1 = rows + row_width(tw);
  for (index_t co = 0; co < w.C_out; ++co) {
    const float shift = bias ? bias[co] : 0.0f;
    for (index_t u = u0; u < u1; ++u) {
      const index_t n = u / th, oh = 2 * (u % th);
      const index_t col = (u - u0) * tw;
      const float* m[16];
      for (int e = 0; e < 16; ++e) m[e] = M + (e * w.C_out + co) * ld + col;
      row(m, tw, shift, y0, y1);
      float* dst = out + ((n * w.C_out + co) * w.H_out + oh) * w.W_out;
      std::memcpy(dst, y0, sizeof(float) * w.W_out);
      if (oh + 1 < w.H_out) std::memcpy(dst + w.W_out, y1, sizeof(float) * w.W_out);
    }
  }
}

// The whole convolution for transformed weights U: chunks of `chunk_rows`
// tile rows, each input-transformed, multiplied (16 GEMMs) and output-transformed.
double PROF[3];
double tnow() { timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); return ts.tv_sec + 1e-9 * ts.tv_nsec; }
struct ProfPrint { ~ProfPrint() { if (std::getenv("PYDL_WINO_PROF")) std::fprintf(stderr, "in %.3f gemm %.3f out %.3f\n", PROF[0], PROF[1], PROF[2]); } } prof_print;
void winograd_conv(float* out, const float* in, const float* U, const float* bias,
                   const WinoShape& w) {
  const index_t tw = w.tiles_w(), units = w.N * w.tiles_h();
  const double flops = 2.0 * 16 * w.C_out * w.C_in * tw * units;
  const int nt = threads_for(flops, kFlopsPerThread);
  // As many tile rows as the budget allows, but no fewer chunks than threads.
  const index_t budget_rows =
      std::max<index_t>(1, (std::getenv("PYDL_WCHUNK") ? std::atol(std::getenv("PYDL_WCHUNK")) : kChunkFloats) / (16 * (w.C_in + w.C_out) * tw));
  const index_t chunk_rows = std::min(budget_rows, (units + nt - 1) / nt);
  const index_t chunks = (units + chunk_rows - 1) / chunk_rows;
  const int threads = chunks >= nt ? nt : 1;
  const index_t cap = chunk_rows * tw;  // tiles per chunk
  const index_t ldv = cap + 8;  // V rows, with room for the input rows' last block
  // Per thread: V; M and 8 floats the AVX2 output rows may read past it; the
  // row buffers; a row of zeros (the padding above and below the input).
  const std::size_t v_size = 16 * w.C_in * ldv, m_size = 16 * w.C_out * cap + 8;
  const std::size_t per_thread = v_size + m_size + 4 * row_width(tw) + w.W;
  Workspace<float> scratch(per_thread * threads);
  auto run = [&](index_t chunk, int t) {
    float* V = scratch.get() + per_thread * t;
    float* M = V + v_size;
    float* rows = M + m_size;
    float* zeros = rows + 4 * row_width(tw);
    std::fill(zeros, zeros + w.W, 0.0f);
    const index_t u0 = chunk * chunk_rows, u1 = std::min(units, u0 + chunk_rows);
    const index_t ld = (u1 - u0) * tw;
    auto t0 = tnow();
    input_transform(V, ldv, in, w, u0, u1, rows, zeros);
    auto t1 = tnow();
    sgemm_batched(16, false, false, w.C_out, ld, w.C_in, 1.0f, U, w.C_in, w.C_out * w.C_in, V,
                  ldv, w.C_in * ldv, 0.0f, M, ld, w.C_out * ld);
    auto t2 = tnow();
    output_transform(out, M, ld, bias, w, u0, u1, rows);
    auto t3 = tnow();
    PROF[0] += (t1 - t0);
    PROF[1] += (t2 - t1);
    PROF[2] += (t3 - t2);
  };
  if (threads <= 1) {
    for (index_t chunk = 0; chunk < chunks; ++chunk) run(chunk, 0);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (index_t chunk = 0; chunk < chunks; ++chunk) run(chunk, omp_get_thread_num());
#else
  for (index_t chunk = 0; chunk < chunks; ++chunk) run(chunk, 0);
#endif
}

// Measured (1 thread, same run): Winograd beat im2col + GEMM by 1.2-1.7x where
// it does at least ~1.75x fewer multiplies and both sides have 16+ channels;
// with fewer channels the transforms cost what the GEMMs save (8 -> 16: 1.0-1.1x),
// and where zero tiles dilute the saving it lost (grad-input of 13x13 valid
// convs, 1.39x fewer multiplies: 0.76x; 5x5 planes: 0.6-0.96x).
// `direct_outputs` counts the output elements im2col + GEMM computes per
// image and channel pair, 9 multiplies each; Winograd does 16 per tile.
bool suits(const WinoShape& w, index_t direct_outputs) {
  if (const char* force = std::getenv("PYDL_WINO")) return force[0] == '1';
  const double saving = 9.0 * direct_outputs / (16.0 * w.tiles_h() * w.tiles_w());
  return w.C_in >= 16 && w.C_out >= 16 && saving >= 1.75;
}

bool geometry_fits(const Conv2dShape& s) {
  return s.KH == 3 && s.KW == 3 && s.stride_h == 1 && s.stride_w == 1 && s.dilation_h == 1 &&
         s.dilation_w == 1 && s.groups == 1 && s.pad_h <= 2 && s.pad_w <= 2 && s.N > 0 &&
         s.C_in > 0 && s.C_out > 0;
}

}  // namespace

bool winograd_forward_suits(const Conv2dShape& s) {
  return geometry_fits(s) && suits(forward_shape(s), s.H_out() * s.W_out());
}

bool winograd_backward_input_suits(const Conv2dShape& s) {
  return geometry_fits(s) && suits(backward_input_shape(s), s.H_out() * s.W_out());
}

void winograd_forward(float* out, const float* in, const float* weight, const float* bias,
                      const Conv2dShape& s) {
  const WinoShape w = forward_shape(s);
  Workspace<float> U(16 * w.C_out * w.C_in);
  transform_weights(U.get(), weight, w.C_out, w.C_in, false);
  winograd_conv(out, in, U.get(), bias, w);
}

void winograd_backward_input(float* grad_in, const float* grad_out, const float* weight,
                             const Conv2dShape& s) {
  const WinoShape w = backward_input_shape(s);
  Workspace<float> U(16 * w.C_out * w.C_in);
  transform_weights(U.get(), weight, w.C_out, w.C_in, true);
  winograd_conv(grad_in, grad_out, U.get(), nullptr, w);
}

}  // namespace pydl
