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

#include "conv.h"
#include "gemm.h"
#include "parallel.h"

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

// V_e[c][t] for the chunk's tile rows [u0, u1) (u = n * tiles_h + tile row),
// ld = (u1 - u0) * tiles_w columns per V_e row, V_e at V + e * C_in * ld.
// Per channel and tile row: the four input rows under it, zero-padded into
// `rows` (4 x (2 tiles_w + 2)); B^T down the columns (contiguous), then B
// across each tile's four columns (stride 2).
inline __attribute__((always_inline)) void input_transform_body(float* V, index_t ld,
                                                                const float* in,
                                                                const WinoShape& w, index_t u0,
                                                                index_t u1, float* rows) {
  const index_t tw = w.tiles_w(), th = w.tiles_h(), width = 2 * tw + 2;
  float* r[4] = {rows, rows + width, rows + 2 * width, rows + 3 * width};
  // Input columns [lo, hi) land at padded columns [lo + pad_w, hi + pad_w).
  const index_t lo = std::max<index_t>(0, -w.pad_w);
  const index_t hi = std::min<index_t>(w.W, width - w.pad_w);
  for (index_t c = 0; c < w.C_in; ++c)
    for (index_t u = u0; u < u1; ++u) {
      const index_t n = u / th, oh = 2 * (u % th);
      const float* plane = in + (n * w.C_in + c) * w.H * w.W;
      for (int k = 0; k < 4; ++k) {
        const index_t ih = oh - w.pad_h + k;
        std::fill(r[k], r[k] + width, 0.0f);
        if (ih >= 0 && ih < w.H && hi > lo)
          std::memcpy(r[k] + lo + w.pad_w, plane + ih * w.W + lo, sizeof(float) * (hi - lo));
      }
      for (index_t x = 0; x < width; ++x) {  // B^T d: rows become (d0-d2, d1+d2, d2-d1, d1-d3)
        const float d0 = r[0][x], d1 = r[1][x], d2 = r[2][x], d3 = r[3][x];
        r[0][x] = d0 - d2;
        r[1][x] = d1 + d2;
        r[2][x] = d2 - d1;
        r[3][x] = d1 - d3;
      }
      const index_t col = (u - u0) * tw;
      for (int k = 0; k < 4; ++k) {  // (B^T d) B: the same combination across columns
        float* v0 = V + ((k * 4 + 0) * w.C_in + c) * ld + col;
        float* v1 = V + ((k * 4 + 1) * w.C_in + c) * ld + col;
        float* v2 = V + ((k * 4 + 2) * w.C_in + c) * ld + col;
        float* v3 = V + ((k * 4 + 3) * w.C_in + c) * ld + col;
        const float* t = r[k];
        for (index_t x = 0; x < tw; ++x) {
          const float d0 = t[2 * x], d1 = t[2 * x + 1], d2 = t[2 * x + 2], d3 = t[2 * x + 3];
          v0[x] = d0 - d2;
          v1[x] = d1 + d2;
          v2[x] = d2 - d1;
          v3[x] = d1 - d3;
        }
      }
    }
}

// out = A^T M A (+ bias) for the chunk's tile rows [u0, u1), M_e at M + e * C_out * ld.
// A across each tile first (contiguous in t), then A^T down; the 2x2 results go
// through `rows` (2 x 2 tiles_w) and are clipped to the plane at its odd edges.
inline __attribute__((always_inline)) void output_transform_body(float* out, const float* M,
                                                                 index_t ld, const float* bias,
                                                                 const WinoShape& w, index_t u0,
                                                                 index_t u1, float* rows) {
  const index_t tw = w.tiles_w(), th = w.tiles_h();
  float* y0 = rows;
  float* y1 = rows + 2 * tw;
  for (index_t co = 0; co < w.C_out; ++co) {
    const float shift = bias ? bias[co] : 0.0f;
    for (index_t u = u0; u < u1; ++u) {
      const index_t n = u / th, oh = 2 * (u % th);
      const index_t col = (u - u0) * tw;
      const float* m[16];
      for (int e = 0; e < 16; ++e) m[e] = M + (e * w.C_out + co) * ld + col;
      for (index_t x = 0; x < tw; ++x) {
        float s0[4], s1[4];  // (M A) row k: (m0+m1+m2, m1-m2-m3)
        for (int k = 0; k < 4; ++k) {
          const float a = m[4 * k][x], b = m[4 * k + 1][x], c = m[4 * k + 2][x],
                      d = m[4 * k + 3][x];
          s0[k] = a + b + c;
          s1[k] = b - c - d;
        }
        y0[2 * x] = s0[0] + s0[1] + s0[2] + shift;
        y0[2 * x + 1] = s1[0] + s1[1] + s1[2] + shift;
        y1[2 * x] = s0[1] - s0[2] - s0[3] + shift;
        y1[2 * x + 1] = s1[1] - s1[2] - s1[3] + shift;
      }
      float* dst = out + ((n * w.C_out + co) * w.H_out + oh) * w.W_out;
      std::memcpy(dst, y0, sizeof(float) * w.W_out);
      if (oh + 1 < w.H_out) std::memcpy(dst + w.W_out, y1, sizeof(float) * w.W_out);
    }
  }
}

#if PYDL_X86
PYDL_TARGET_AVX2 void input_transform_avx2(float* V, index_t ld, const float* in,
                                           const WinoShape& w, index_t u0, index_t u1,
                                           float* rows) {
  input_transform_body(V, ld, in, w, u0, u1, rows);
}
PYDL_TARGET_AVX2 void output_transform_avx2(float* out, const float* M, index_t ld,
                                            const float* bias, const WinoShape& w, index_t u0,
                                            index_t u1, float* rows) {
  output_transform_body(out, M, ld, bias, w, u0, u1, rows);
}
#endif

void input_transform(float* V, index_t ld, const float* in, const WinoShape& w, index_t u0,
                     index_t u1, float* rows) {
#if PYDL_X86
  if (use_avx2()) return input_transform_avx2(V, ld, in, w, u0, u1, rows);
#endif
  input_transform_body(V, ld, in, w, u0, u1, rows);
}

void output_transform(float* out, const float* M, index_t ld, const float* bias,
                      const WinoShape& w, index_t u0, index_t u1, float* rows) {
#if PYDL_X86
  if (use_avx2()) return output_transform_avx2(out, M, ld, bias, w, u0, u1, rows);
#endif
  output_transform_body(out, M, ld, bias, w, u0, u1, rows);
}

// The whole convolution for transformed weights U: chunks of `chunk_rows`
// tile rows, each input-transformed, multiplied (16 GEMMs) and output-transformed.
void winograd_conv(float* out, const float* in, const float* U, const float* bias,
                   const WinoShape& w) {
  const index_t tw = w.tiles_w(), units = w.N * w.tiles_h();
  const double flops = 2.0 * 16 * w.C_out * w.C_in * tw * units;
  const int nt = threads_for(flops, kFlopsPerThread);
  // As many tile rows as the budget allows, but no fewer chunks than threads.
  const index_t budget_rows =
      std::max<index_t>(1, kChunkFloats / (16 * (w.C_in + w.C_out) * tw));
  const index_t chunk_rows = std::min(budget_rows, (units + nt - 1) / nt);
  const index_t chunks = (units + chunk_rows - 1) / chunk_rows;
  const int threads = chunks >= nt ? nt : 1;
  const index_t cap = chunk_rows * tw;  // tiles per chunk
  const std::size_t per_thread = 16 * (w.C_in + w.C_out) * cap + 4 * (2 * tw + 2);
  Workspace<float> scratch(per_thread * threads);
  auto run = [&](index_t chunk, int t) {
    float* V = scratch.get() + per_thread * t;
    float* M = V + 16 * w.C_in * cap;
    float* rows = M + 16 * w.C_out * cap;
    const index_t u0 = chunk * chunk_rows, u1 = std::min(units, u0 + chunk_rows);
    const index_t ld = (u1 - u0) * tw;
    input_transform(V, ld, in, w, u0, u1, rows);
    sgemm_batched(16, false, false, w.C_out, ld, w.C_in, 1.0f, U, w.C_in, w.C_out * w.C_in, V,
                  ld, w.C_in * ld, 0.0f, M, ld, w.C_out * ld);
    output_transform(out, M, ld, bias, w, u0, u1, rows);
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

bool suits(const WinoShape& w) {
  if (const char* force = std::getenv("PYDL_WINO")) return force[0] == '1';
  return w.C_in >= 16 && w.C_out >= 16 && w.H_out >= 6 && w.W_out >= 6;
}

bool geometry_fits(const Conv2dShape& s) {
  return s.KH == 3 && s.KW == 3 && s.stride_h == 1 && s.stride_w == 1 && s.dilation_h == 1 &&
         s.dilation_w == 1 && s.groups == 1 && s.pad_h <= 2 && s.pad_w <= 2 && s.N > 0 &&
         s.C_in > 0 && s.C_out > 0;
}

}  // namespace

bool winograd_forward_suits(const Conv2dShape& s) {
  return geometry_fits(s) && suits(forward_shape(s));
}

bool winograd_backward_input_suits(const Conv2dShape& s) {
  return geometry_fits(s) && suits(backward_input_shape(s));
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
