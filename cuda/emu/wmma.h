// Host emulation of the TF32 warp matrix operations of nvcuda::wmma (shape
// m16n16k8, float accumulators), included by emulator.h.
//
// CUDA leaves a fragment's layout across the lanes unspecified, so here every
// lane holds the whole tile: x[r * cols + c] is element (r, c) of the A tile
// (16 x 8), the B tile (8 x 16) or the accumulator (16 x 16), and each lane
// does the whole load and product itself. Code that loops over num_elements
// and applies __float_to_tf32 to each element, as the API requires, works on
// either layout. Every operation is warp-collective, as on the GPU: each one
// starts at a warp barrier, so a lane that skips it makes the launch fail.
// store_matrix_sync has lane 0 write, so a lane that reads the stored tile
// without a __syncwarp() first sees the poisoned memory, as it may on a GPU.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace nvcuda::wmma {

struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;
namespace precision {
struct tf32;
}
enum layout_t { mem_row_major, mem_col_major };

// cvt.rna.tf32.f32: keep 10 of float's 23 mantissa bits, rounding to nearest
// with ties away from zero (add half of the dropped unit to the magnitude,
// then truncate); NaN and infinity pass unchanged. The result is a float with
// its low 13 bits zero.
inline float __float_to_tf32(float in) {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(in);
  if ((bits & 0x7f800000u) == 0x7f800000u) return in;
  bits = (bits + 0x1000u) & ~0x1fffu;
  return std::bit_cast<float>(bits);
}

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
  static_assert(M == 16 && N == 16 && K == 8, "only the m16n16k8 shape is emulated");
  static_assert(std::is_same_v<T, precision::tf32> || std::is_same_v<T, float>,
                "only TF32 operands and float accumulators are emulated");

 public:
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = rows * cols;
  float x[num_elements];
};

namespace detail {

// Every lane of the calling warp meets here; wmma needs a whole warp.
inline void warp_collective(const char* op) {
  pydl_emu::ThreadState& t = pydl_emu::current;
  pydl_emu::Warp& warp = t.launch->warps[t.warp];
  if (warp.lanes != 32)
    throw std::runtime_error(std::string("wmma::") + op + " in a warp of " +
                             std::to_string(warp.lanes) + " lanes; it needs all 32");
  warp.barrier.arrive_and_wait();
}

// The GPU needs 256-bit aligned tile pointers and ldm a multiple of 16 bytes.
inline void check_tile_address(const void* p, unsigned ldm, const char* op) {
  if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0 || ldm % 4 != 0)
    throw std::runtime_error(std::string("wmma::") + op + ": pointer not 32-byte aligned or ldm " +
                             std::to_string(ldm) + " not a multiple of 4 floats");
}

}  // namespace detail

// Element (r, c) of the tile is p[r * ldm + c] (row_major) or p[c * ldm + r] (col_major).
template <class Use, class Layout>
void load_matrix_sync(fragment<Use, 16, 16, 8, precision::tf32, Layout>& a, const float* p,
                      unsigned ldm) {
  static_assert(std::is_same_v<Layout, row_major> || std::is_same_v<Layout, col_major>);
  detail::warp_collective("load_matrix_sync");
  detail::check_tile_address(p, ldm, "load_matrix_sync");
  using Fragment = std::remove_reference_t<decltype(a)>;
  constexpr bool kRowMajor = std::is_same_v<Layout, row_major>;
  for (int r = 0; r < Fragment::rows; ++r)
    for (int c = 0; c < Fragment::cols; ++c)
      a.x[r * Fragment::cols + c] = kRowMajor ? p[r * ldm + c] : p[c * ldm + r];
}

template <class Use, class T, class Layout>
void fill_fragment(fragment<Use, 16, 16, 8, T, Layout>& f, float value) {
  detail::warp_collective("fill_fragment");
  for (float& v : f.x) v = value;
}

// d = a * b + c in float, summing over k in order (d may be c). The tensor
// cores read only the TF32 bits of each operand, so an operand the caller did
// not round with __float_to_tf32 is truncated here, as there. Products of two
// TF32 values are exact in float, so only the sums round.
template <class LayoutA, class LayoutB>
void mma_sync(fragment<accumulator, 16, 16, 8, float>& d,
              const fragment<matrix_a, 16, 16, 8, precision::tf32, LayoutA>& a,
              const fragment<matrix_b, 16, 16, 8, precision::tf32, LayoutB>& b,
              const fragment<accumulator, 16, 16, 8, float>& c) {
  detail::warp_collective("mma_sync");
  const auto tf32_bits = [](float v) {
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) & ~0x1fffu);
  };
  float out[16 * 16];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float sum = c.x[i * 16 + j];
      for (int k = 0; k < 8; ++k)
        sum = std::fma(tf32_bits(a.x[i * 8 + k]), tf32_bits(b.x[k * 16 + j]), sum);
      out[i * 16 + j] = sum;
    }
  for (int e = 0; e < 16 * 16; ++e) d.x[e] = out[e];
}

// Element (i, j) goes to p[i * ldm + j] (mem_row_major) or p[j * ldm + i].
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 8, float>& f,
                              unsigned ldm, layout_t layout) {
  detail::warp_collective("store_matrix_sync");
  detail::check_tile_address(p, ldm, "store_matrix_sync");
  if (pydl_emu::current.lane != 0) return;
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j)
      (layout == mem_row_major ? p[i * ldm + j] : p[j * ldm + i]) = f.x[i * 16 + j];
}

}  // namespace nvcuda::wmma
