// Winograd F(2x2, 3x3): 3x3 convolution, stride 1, dilation 1, one group.
//
// Each 2x2 block of output (a "tile") comes from the 4x4 input patch d under it:
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A        (.) elementwise, 16 products
// instead of 36 multiplies per tile and channel pair. With the 16 positions e
// of the 4x4 transformed tile as separate matrices, the sum over input
// channels is a GEMM per e:
//   U_e (C_out x C_in) = (G g G^T)_e   V_e (C_in x T) = (B^T d B)_e   M_e = U_e V_e
// and the output transform reads the 16 M_e. Grad-input runs the same steps
// backwards (the adjoint of each): dM = A dY A^T, dV_e = U_e^T dM_e, and
// dX += B dV B^T over each tile's 4x4 patch (neighbouring patches overlap by 2).
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
// U is stored (16, C_out, C_in) and the grad-input GEMMs read it transposed, so
// one transform serves both passes: the caller may compute it once
// (winograd_transform_weights) and hand it to forward and grad-input.
// Tiles run in chunks of whole tile rows (several images when planes are
// small), sized so the transformed chunks stay in cache: no buffer ever holds
// the whole batch. Threads take whole chunks, as conv.cpp does with its col
// tiles; with fewer chunks than threads, the GEMMs thread instead.
#include <algorithm>
#include <cstring>

#include "conv.h"
#include "gemm.h"
#include "parallel.h"

#if PYDL_X86
#include <immintrin.h>
#endif

namespace pydl {

namespace {

// Both transformed chunks together: 1 MiB, in L2/L3 beside the GEMM's packed
// blocks, while a chunk still gives each GEMM ~100+ columns at 64 channels.
constexpr index_t kChunkFloats = index_t(1) << 18;
constexpr double kFlopsPerThread = 2e6;

}  // namespace

// ---- weights -------------------------------------------------------------------

// U_e = (G g G^T)_e for g = weight[co][ci] (3x3), stored U[e][co][ci]; the
// grad-input GEMMs read it transposed (U_e^T).
void winograd_transform_weights(float* U, const float* weight, const Conv2dShape& s) {
  const index_t C_out = s.C_out, C_in = s.C_in;
  const index_t step = C_out * C_in;  // from U_e to U_e+1
  for (index_t co = 0; co < C_out; ++co)
    for (index_t ci = 0; ci < C_in; ++ci) {
      const float* g = weight + (co * C_in + ci) * 9;
      float gg[4][3];  // G g
      for (int j = 0; j < 3; ++j) {
        gg[0][j] = g[j];
        gg[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
        gg[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
        gg[3][j] = g[6 + j];
      }
      float* u = U + co * C_in + ci;
      for (int i = 0; i < 4; ++i, u += 4 * step) {  // (G g) G^T, row i
        u[0] = gg[i][0];
        u[step] = 0.5f * (gg[i][0] + gg[i][1] + gg[i][2]);
        u[2 * step] = 0.5f * (gg[i][0] - gg[i][1] + gg[i][2]);
        u[3 * step] = gg[i][2];
      }
    }
}

namespace {

// ---- row kernels -------------------------------------------------------------------
// Each works on one tile row (tiles [0, tw)) of one channel. Row buffers hold
// 2 tw + 2 columns, rounded up so the AVX2 kernels read and write whole
// 8-tile blocks (16 + 2 columns each; tiles [0, tw] for scatter_row) without
// bounds checks.
index_t row_width(index_t tw) { return 16 * (tw / 8 + 1) + 2; }

// B across one row t of B^T d: tile x reads t[2x .. 2x+3] and writes
// (d0-d2, d1+d2, d2-d1, d1-d3) to v[0..3][x].
void input_row_portable(const float* t, index_t tw, float* const v[4]) {
  for (index_t x = 0; x < tw; ++x) {
    const float d0 = t[2 * x], d1 = t[2 * x + 1], d2 = t[2 * x + 2], d3 = t[2 * x + 3];
    v[0][x] = d0 - d2;
    v[1][x] = d1 + d2;
    v[2][x] = d2 - d1;
    v[3][x] = d1 - d3;
  }
}

// A across one row t of A dY: tile x reads (a, b) = t[2x], t[2x+1] and writes
// (a, a+b, a-b, -b) to v[0..3][x].
void grad_row_portable(const float* t, index_t tw, float* const v[4]) {
  for (index_t x = 0; x < tw; ++x) {
    const float a = t[2 * x], b = t[2 * x + 1];
    v[0][x] = a;
    v[1][x] = a + b;
    v[2][x] = a - b;
    v[3][x] = -b;
  }
}

// A^T M A: m[e][x] (e = 4k + l) to the output rows y0 and y1 (2 tw columns), plus `shift`.
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

// dV B^T across one row: tile x's v[0..3][x] become (v0, v1-v2+v3, v1+v2-v0, -v3),
// summed into t[2x .. 2x+3] (neighbouring tiles overlap by two columns); t
// gets 2 tw + 2 columns.
void scatter_row_portable(const float* const v[4], index_t tw, float* t) {
  std::fill(t, t + 2 * tw + 2, 0.0f);
  for (index_t x = 0; x < tw; ++x) {
    const float v0 = v[0][x], v1 = v[1][x], v2 = v[2][x], v3 = v[3][x];
    t[2 * x] += v0;
    t[2 * x + 1] += v1 - v2 + v3;
    t[2 * x + 2] += v1 + v2 - v0;
    t[2 * x + 3] -= v3;
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

// The AVX2 kernels take 8 tiles at a time. A last, partial block writes whole
// vectors (up to 7 floats past v[l] + tw) or reads them (up to 7 floats past
// m[e] + tw): the callers' buffers leave room for both.
PYDL_TARGET_AVX2 void input_row_avx2(const float* t, index_t tw, float* const v[4]) {
  for (index_t x = 0; x < tw; x += 8) {
    __m256 d0, d1, d2, d3;
    deinterleave(t + 2 * x, d0, d1);
    deinterleave(t + 2 * x + 2, d2, d3);
    _mm256_storeu_ps(v[0] + x, _mm256_sub_ps(d0, d2));
    _mm256_storeu_ps(v[1] + x, _mm256_add_ps(d1, d2));
    _mm256_storeu_ps(v[2] + x, _mm256_sub_ps(d2, d1));
    _mm256_storeu_ps(v[3] + x, _mm256_sub_ps(d1, d3));
  }
}

PYDL_TARGET_AVX2 void grad_row_avx2(const float* t, index_t tw, float* const v[4]) {
  for (index_t x = 0; x < tw; x += 8) {
    __m256 a, b;
    deinterleave(t + 2 * x, a, b);
    _mm256_storeu_ps(v[0] + x, a);
    _mm256_storeu_ps(v[1] + x, _mm256_add_ps(a, b));
    _mm256_storeu_ps(v[2] + x, _mm256_sub_ps(a, b));
    _mm256_storeu_ps(v[3] + x, _mm256_sub_ps(_mm256_setzero_ps(), b));
  }
}

// With c0..c3 the four columns of each tile, even columns are c0[x] + c2[x-1]
// and odd ones c1[x] + c3[x-1]: c2, c3 move up one lane, the lane leaving the
// block carried into the next. Tiles past tw load as zero, so the last block
// (run up to tile tw, which holds only the carry) writes exact columns.
PYDL_TARGET_AVX2 void scatter_row_avx2(const float* const v[4], index_t tw, float* t) {
  const __m256i up_one = _mm256_setr_epi32(7, 0, 1, 2, 3, 4, 5, 6);
  __m256 carry2 = _mm256_setzero_ps(), carry3 = _mm256_setzero_ps();
  for (index_t x = 0; x <= tw; x += 8) {
    __m256 v0, v1, v2, v3;
    if (x + 8 <= tw) {
      v0 = _mm256_loadu_ps(v[0] + x), v1 = _mm256_loadu_ps(v[1] + x);
      v2 = _mm256_loadu_ps(v[2] + x), v3 = _mm256_loadu_ps(v[3] + x);
    } else {
      const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(tw - x)),
                                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      v0 = _mm256_maskload_ps(v[0] + x, mask), v1 = _mm256_maskload_ps(v[1] + x, mask);
      v2 = _mm256_maskload_ps(v[2] + x, mask), v3 = _mm256_maskload_ps(v[3] + x, mask);
    }
    const __m256 c1 = _mm256_add_ps(_mm256_sub_ps(v1, v2), v3);
    const __m256 c2 = _mm256_sub_ps(_mm256_add_ps(v1, v2), v0);
    const __m256 c3 = _mm256_sub_ps(_mm256_setzero_ps(), v3);
    const __m256 r2 = _mm256_permutevar8x32_ps(c2, up_one), r3 = _mm256_permutevar8x32_ps(c3, up_one);
    const __m256 even = _mm256_add_ps(v0, _mm256_blend_ps(r2, carry2, 1));
    const __m256 odd = _mm256_add_ps(c1, _mm256_blend_ps(r3, carry3, 1));
    carry2 = r2, carry3 = r3;  // lane 0 now holds the block's last c2, c3
    const __m256 lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);
    _mm256_storeu_ps(t + 2 * x, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(t + 2 * x + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
}

// The pairs (y[2x], y[2x+1]) are interleaved back into rows.
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

// B^T down the columns of four input rows d (n columns) into r:
// (d0-d2, d1+d2, d2-d1, d1-d3).
inline __attribute__((always_inline)) void input_columns(float* const r[4], const float* const d[4],
                                                         index_t n) {
  float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
  const float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3];
#pragma GCC ivdep
  for (index_t x = 0; x < n; ++x) {
    const float a = d0[x], b = d1[x], c = d2[x], e = d3[x];
    r0[x] = a - c;
    r1[x] = b + c;
    r2[x] = c - b;
    r3[x] = b - e;
  }
}

// B down the columns of the four rows r (n columns), in place:
// (r0, r1-r2+r3, r1+r2-r0, -r3).
inline __attribute__((always_inline)) void scatter_columns(float* const r[4], index_t n) {
  float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
#pragma GCC ivdep
  for (index_t x = 0; x < n; ++x) {
    const float a = r0[x], b = r1[x], c = r2[x], e = r3[x];
    r1[x] = b - c + e;
    r2[x] = b + c - a;
    r3[x] = -e;
  }
}

// ---- shapes and chunks ---------------------------------------------------------------

struct Chunking {
  index_t th, tw;        // tiles down and across a plane
  index_t units;         // tile rows in the batch: u = n * th + tile row
  index_t chunk_rows;    // tile rows per chunk
  index_t chunks;
  int threads;           // threads taking whole chunks; 1: chunks in order, GEMMs threaded
  index_t cap;           // tiles per chunk
  index_t ldv;           // row stride of the transformed operand a row kernel writes: cap + 8
};

Chunking make_chunking(const Conv2dShape& s) {
  Chunking c;
  c.th = (s.H_out() + 1) / 2;
  c.tw = (s.W_out() + 1) / 2;
  c.units = s.N * c.th;
  const double flops = 2.0 * 16 * s.C_out * s.C_in * c.tw * c.units;
  const int nt = threads_for(flops, kFlopsPerThread);
  // As many tile rows as the budget allows, but no fewer chunks than threads.
  const index_t budget_rows =
      std::max<index_t>(1, kChunkFloats / (16 * (s.C_in + s.C_out) * c.tw));
  c.chunk_rows = std::min(budget_rows, (c.units + nt - 1) / nt);
  c.chunks = (c.units + c.chunk_rows - 1) / c.chunk_rows;
  c.threads = c.chunks >= nt ? nt : 1;
  c.cap = c.chunk_rows * c.tw;
  c.ldv = c.cap + 8;
  return c;
}

// Per-thread buffers: the GEMM's B operand (16 x C_b rows of ldv), its product
// (16 x C_c rows of cap, + 8 floats the AVX2 kernels may read past it), the
// row buffers, and a row of zeros (padding above and below a plane).
struct Scratch {
  Scratch(const Chunking& c, index_t C_b, index_t C_c, index_t zeros_size)
      : b_size(16 * C_b * c.ldv),
        c_size(16 * C_c * c.cap + 8),
        rows_size(4 * row_width(c.tw)),
        zeros_size(zeros_size),
        per_thread(b_size + c_size + rows_size + zeros_size),
        buffer(per_thread * c.threads) {
    for (int t = 0; t < c.threads; ++t) std::fill(zeros(t), zeros(t) + zeros_size, 0.0f);
  }
  float* b(int t) const { return buffer.get() + per_thread * t; }
  float* c(int t) const { return b(t) + b_size; }
  float* rows(int t) const { return c(t) + c_size; }
  float* zeros(int t) const { return rows(t) + rows_size; }
  std::size_t b_size, c_size, rows_size, zeros_size, per_thread;
  Workspace<float> buffer;
};

// Runs body(u0, u1, t) for every chunk of tile rows [u0, u1), t being the
// running thread's index. `overlapping`: neighbouring chunks write the same
// rows (grad-input's patches), so even chunks run first, then odd ones.
template <class Body>
void for_each_chunk(const Chunking& c, bool overlapping, const Body& body) {
  auto run = [&](index_t chunk, int t) {
    body(chunk * c.chunk_rows, std::min(c.units, (chunk + 1) * c.chunk_rows), t);
  };
  if (c.threads <= 1) {
    for (index_t chunk = 0; chunk < c.chunks; ++chunk) run(chunk, 0);
    return;
  }
  const index_t step = overlapping ? 2 : 1;
  for (index_t first = 0; first < step; ++first) {
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(c.threads)
    for (index_t chunk = first; chunk < c.chunks; chunk += step) run(chunk, omp_get_thread_num());
#else
    for (index_t chunk = first; chunk < c.chunks; chunk += step) run(chunk, 0);
#endif
  }
}

// ---- transforms of one chunk ---------------------------------------------------------
// Written once as always-inline bodies and compiled twice, for the portable
// path and inside an AVX2 function (where the compiler vectorizes the column
// loops with AVX2 too and the row kernels are the intrinsic ones).

// V_e[ci][x] for the chunk's tile rows [u0, u1), V_e at V + e * C_in * ldv: per
// channel and tile row, B^T down the four input rows under it (into `rows`,
// zero where the padding is), then B across.
template <bool kAvx2>
inline __attribute__((always_inline)) void input_transform_body(
    float* V, index_t ldv, const float* in, const Conv2dShape& s, const Chunking& ch,
    index_t u0, index_t u1, float* rows, const float* zeros) {
  const index_t width = row_width(ch.tw);
  float* const r[4] = {rows, rows + width, rows + 2 * width, rows + 3 * width};
  // Input columns [0, hi) land at padded columns [pad_w, hi + pad_w); the rest stay zero.
  const index_t hi = std::min<index_t>(s.W, 2 * ch.tw + 2 - s.pad_w);
  std::fill(rows, rows + 4 * width, 0.0f);
  float* const shifted[4] = {r[0] + s.pad_w, r[1] + s.pad_w, r[2] + s.pad_w, r[3] + s.pad_w};
  for (index_t c = 0; c < s.C_in; ++c)
    for (index_t u = u0; u < u1; ++u) {
      const index_t n = u / ch.th, oh = 2 * (u % ch.th);
      const float* plane = in + (n * s.C_in + c) * s.H * s.W;
      const float* d[4];
      for (int k = 0; k < 4; ++k) {
        const index_t ih = oh - s.pad_h + k;
        d[k] = ih >= 0 && ih < s.H ? plane + ih * s.W : zeros;
      }
      input_columns(shifted, d, hi);
      const index_t col = (u - u0) * ch.tw;
      for (int k = 0; k < 4; ++k) {
        float* const v[4] = {V + ((4 * k + 0) * s.C_in + c) * ldv + col,
                             V + ((4 * k + 1) * s.C_in + c) * ldv + col,
                             V + ((4 * k + 2) * s.C_in + c) * ldv + col,
                             V + ((4 * k + 3) * s.C_in + c) * ldv + col};
#if PYDL_X86
        if (kAvx2) {
          input_row_avx2(r[k], ch.tw, v);
          continue;
        }
#endif
        input_row_portable(r[k], ch.tw, v);
      }
    }
}

// out = A^T M A (+ bias) for the chunk, M_e at M + e * C_out * ld. The 2x2
// results of a tile row go through `rows` and are clipped to the plane.
template <bool kAvx2>
inline __attribute__((always_inline)) void output_transform_body(
    float* out, const float* M, index_t ld, const float* bias, const Conv2dShape& s,
    const Chunking& ch, index_t u0, index_t u1, float* rows) {
  const index_t H_out = s.H_out(), W_out = s.W_out();
  float* y0 = rows;
  float* y1 = rows + row_width(ch.tw);
  for (index_t co = 0; co < s.C_out; ++co) {
    const float shift = bias ? bias[co] : 0.0f;
    for (index_t u = u0; u < u1; ++u) {
      const index_t n = u / ch.th, oh = 2 * (u % ch.th);
      const float* m[16];
      for (int e = 0; e < 16; ++e) m[e] = M + (e * s.C_out + co) * ld + (u - u0) * ch.tw;
#if PYDL_X86
      if (kAvx2)
        output_row_avx2(m, ch.tw, shift, y0, y1);
      else
#endif
        output_row_portable(m, ch.tw, shift, y0, y1);
      float* dst = out + ((n * s.C_out + co) * H_out + oh) * W_out;
      std::memcpy(dst, y0, sizeof(float) * W_out);
      if (oh + 1 < H_out) std::memcpy(dst + W_out, y1, sizeof(float) * W_out);
    }
  }
}

// dM_e[co][x] = (A dY A^T)_e for the chunk, dM_e at dM + e * C_out * ldv; dY
// is zero past the plane (the tiles that stick out of an odd H_out or W_out).
template <bool kAvx2>
inline __attribute__((always_inline)) void grad_transform_body(
    float* dM, index_t ldv, const float* grad_out, const Conv2dShape& s, const Chunking& ch,
    index_t u0, index_t u1, float* rows, const float* zeros) {
  const index_t H_out = s.H_out(), W_out = s.W_out(), width = row_width(ch.tw);
  float* const r[4] = {rows, rows + width, rows + 2 * width, rows + 3 * width};
  std::fill(rows, rows + 4 * width, 0.0f);
  for (index_t co = 0; co < s.C_out; ++co)
    for (index_t u = u0; u < u1; ++u) {
      const index_t n = u / ch.th, oh = 2 * (u % ch.th);
      const float* g0 = grad_out + ((n * s.C_out + co) * H_out + oh) * W_out;
      const float* g1 = oh + 1 < H_out ? g0 + W_out : zeros;
      float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
#pragma GCC ivdep
      for (index_t x = 0; x < W_out; ++x) {  // A dY: rows (g0, g0+g1, g0-g1, -g1)
        r0[x] = g0[x];
        r1[x] = g0[x] + g1[x];
        r2[x] = g0[x] - g1[x];
        r3[x] = -g1[x];
      }
      const index_t col = (u - u0) * ch.tw;
      for (int k = 0; k < 4; ++k) {
        float* const v[4] = {dM + ((4 * k + 0) * s.C_out + co) * ldv + col,
                             dM + ((4 * k + 1) * s.C_out + co) * ldv + col,
                             dM + ((4 * k + 2) * s.C_out + co) * ldv + col,
                             dM + ((4 * k + 3) * s.C_out + co) * ldv + col};
#if PYDL_X86
        if (kAvx2) {
          grad_row_avx2(r[k], ch.tw, v);
          continue;
        }
#endif
        grad_row_portable(r[k], ch.tw, v);
      }
    }
}

// grad_in += B dV B^T over each tile's patch, clipped to the plane; dV_e at
// dV + e * C_in * ld.
template <bool kAvx2>
inline __attribute__((always_inline)) void scatter_transform_body(
    float* grad_in, const float* dV, index_t ld, const Conv2dShape& s, const Chunking& ch,
    index_t u0, index_t u1, float* rows) {
  const index_t width = row_width(ch.tw), used = 2 * ch.tw + 2;
  float* const r[4] = {rows, rows + width, rows + 2 * width, rows + 3 * width};
  const index_t hi = std::min<index_t>(s.W, used - s.pad_w);  // input columns a patch reaches
  for (index_t c = 0; c < s.C_in; ++c)
    for (index_t u = u0; u < u1; ++u) {
      const index_t n = u / ch.th, oh = 2 * (u % ch.th);
      const index_t col = (u - u0) * ch.tw;
      for (int k = 0; k < 4; ++k) {
        const float* const v[4] = {dV + ((4 * k + 0) * s.C_in + c) * ld + col,
                                   dV + ((4 * k + 1) * s.C_in + c) * ld + col,
                                   dV + ((4 * k + 2) * s.C_in + c) * ld + col,
                                   dV + ((4 * k + 3) * s.C_in + c) * ld + col};
#if PYDL_X86
        if (kAvx2) {
          scatter_row_avx2(v, ch.tw, r[k]);
          continue;
        }
#endif
        scatter_row_portable(v, ch.tw, r[k]);
      }
      scatter_columns(r, used);
      float* plane = grad_in + (n * s.C_in + c) * s.H * s.W;
      for (int k = 0; k < 4; ++k) {
        const index_t ih = oh - s.pad_h + k;
        if (ih < 0 || ih >= s.H) continue;
        float* dst = plane + ih * s.W;
        const float* src = r[k] + s.pad_w;
#pragma GCC ivdep
        for (index_t x = 0; x < hi; ++x) dst[x] += src[x];
      }
    }
}

#if PYDL_X86
PYDL_TARGET_AVX2 void input_transform_avx2(float* V, index_t ldv, const float* in,
                                           const Conv2dShape& s, const Chunking& ch, index_t u0,
                                           index_t u1, float* rows, const float* zeros) {
  input_transform_body<true>(V, ldv, in, s, ch, u0, u1, rows, zeros);
}
PYDL_TARGET_AVX2 void output_transform_avx2(float* out, const float* M, index_t ld,
                                            const float* bias, const Conv2dShape& s,
                                            const Chunking& ch, index_t u0, index_t u1,
                                            float* rows) {
  output_transform_body<true>(out, M, ld, bias, s, ch, u0, u1, rows);
}
PYDL_TARGET_AVX2 void grad_transform_avx2(float* dM, index_t ldv, const float* grad_out,
                                          const Conv2dShape& s, const Chunking& ch, index_t u0,
                                          index_t u1, float* rows, const float* zeros) {
  grad_transform_body<true>(dM, ldv, grad_out, s, ch, u0, u1, rows, zeros);
}
PYDL_TARGET_AVX2 void scatter_transform_avx2(float* grad_in, const float* dV, index_t ld,
                                             const Conv2dShape& s, const Chunking& ch,
                                             index_t u0, index_t u1, float* rows) {
  scatter_transform_body<true>(grad_in, dV, ld, s, ch, u0, u1, rows);
}
#endif

void input_transform(float* V, index_t ldv, const float* in, const Conv2dShape& s,
                     const Chunking& ch, index_t u0, index_t u1, float* rows,
                     const float* zeros) {
#if PYDL_X86
  if (use_avx2()) return input_transform_avx2(V, ldv, in, s, ch, u0, u1, rows, zeros);
#endif
  input_transform_body<false>(V, ldv, in, s, ch, u0, u1, rows, zeros);
}

void output_transform(float* out, const float* M, index_t ld, const float* bias,
                      const Conv2dShape& s, const Chunking& ch, index_t u0, index_t u1,
                      float* rows) {
#if PYDL_X86
  if (use_avx2()) return output_transform_avx2(out, M, ld, bias, s, ch, u0, u1, rows);
#endif
  output_transform_body<false>(out, M, ld, bias, s, ch, u0, u1, rows);
}

void grad_transform(float* dM, index_t ldv, const float* grad_out, const Conv2dShape& s,
                    const Chunking& ch, index_t u0, index_t u1, float* rows,
                    const float* zeros) {
#if PYDL_X86
  if (use_avx2()) return grad_transform_avx2(dM, ldv, grad_out, s, ch, u0, u1, rows, zeros);
#endif
  grad_transform_body<false>(dM, ldv, grad_out, s, ch, u0, u1, rows, zeros);
}

void scatter_transform(float* grad_in, const float* dV, index_t ld, const Conv2dShape& s,
                       const Chunking& ch, index_t u0, index_t u1, float* rows) {
#if PYDL_X86
  if (use_avx2()) return scatter_transform_avx2(grad_in, dV, ld, s, ch, u0, u1, rows);
#endif
  scatter_transform_body<false>(grad_in, dV, ld, s, ch, u0, u1, rows);
}

}  // namespace

// Measured (1 thread, same run, against im2col + GEMM): forward 1.2-1.75x
// faster where Winograd does at least ~1.75x fewer multiplies (im2col + GEMM
// does 9 per output and channel pair, Winograd 16 per 2x2 tile) and both sides
// have 16+ channels; with 8 -> 16 channels the transforms cost what the GEMMs
// save (1.0-1.1x), and 5x5 planes (3x3 outputs in four tiles, 1.27x fewer
// multiplies) lost (0.8-0.96x). Grad-input transforms C_out channels in and
// C_in out: 1.15-1.5x where C_out <= C_in or the plane is wide (32 -> 64,
// 24x24 out: 1.14x), but 0.93x at 32 -> 64 on 11x11 and 13x13 outputs.
bool winograd_suits(const Conv2dShape& s, bool grad_input) {
  if (s.KH != 3 || s.KW != 3 || s.stride_h != 1 || s.stride_w != 1 || s.dilation_h != 1 ||
      s.dilation_w != 1 || s.groups != 1 || s.N == 0 || s.C_in < 16 || s.C_out < 16)
    return false;
  const index_t H_out = s.H_out(), W_out = s.W_out();
  const double tiles = double((H_out + 1) / 2) * ((W_out + 1) / 2);
  if (9.0 * H_out * W_out < 1.75 * 16.0 * tiles) return false;
  return !grad_input || s.C_out <= s.C_in || W_out >= 24;
}

namespace {

// The weight's transform: U when the caller has it, else computed into `own`,
// which then holds winograd_weights_size(s) floats (none when U is given).
const float* weights_transformed(const float* U, const float* weight, const Conv2dShape& s,
                                 const Workspace<float>& own) {
  if (U) return U;
  winograd_transform_weights(own.get(), weight, s);
  return own.get();
}

}  // namespace

void winograd_forward(float* out, const float* in, const float* weight, const float* bias,
                      const Conv2dShape& s, const float* U_given) {
  const Workspace<float> own(U_given ? 0 : winograd_weights_size(s));
  const float* U = weights_transformed(U_given, weight, s, own);
  const Chunking ch = make_chunking(s);
  const Scratch scratch(ch, s.C_in, s.C_out, s.W);
  for_each_chunk(ch, false, [&](index_t u0, index_t u1, int t) {
    const index_t ld = (u1 - u0) * ch.tw;
    float *V = scratch.b(t), *M = scratch.c(t);
    input_transform(V, ch.ldv, in, s, ch, u0, u1, scratch.rows(t), scratch.zeros(t));
    sgemm_batched(16, false, false, s.C_out, ld, s.C_in, 1.0f, U, s.C_in, s.C_out * s.C_in,
                  V, ch.ldv, s.C_in * ch.ldv, 0.0f, M, ld, s.C_out * ld);
    output_transform(out, M, ld, bias, s, ch, u0, u1, scratch.rows(t));
  });
}

void winograd_backward_input(float* grad_in, const float* grad_out, const float* weight,
                             const Conv2dShape& s, const float* U_given) {
  const Workspace<float> own(U_given ? 0 : winograd_weights_size(s));
  const float* U = weights_transformed(U_given, weight, s, own);
  const Chunking ch = make_chunking(s);
  const Scratch scratch(ch, s.C_out, s.C_in, s.W_out());
  std::fill(grad_in, grad_in + s.N * s.C_in * s.H * s.W, 0.0f);
  for_each_chunk(ch, true, [&](index_t u0, index_t u1, int t) {
    const index_t ld = (u1 - u0) * ch.tw;
    float *dM = scratch.b(t), *dV = scratch.c(t);
    grad_transform(dM, ch.ldv, grad_out, s, ch, u0, u1, scratch.rows(t), scratch.zeros(t));
    // dV_e (C_in x tiles) = U_e^T dM_e, U_e stored (C_out x C_in).
    sgemm_batched(16, true, false, s.C_in, ld, s.C_out, 1.0f, U, s.C_in, s.C_in * s.C_out, dM,
                  ch.ldv, s.C_out * ch.ldv, 0.0f, dV, ld, s.C_in * ld);
    scatter_transform(grad_in, dV, ld, s, ch, u0, u1, scratch.rows(t));
  });
}

}  // namespace pydl
