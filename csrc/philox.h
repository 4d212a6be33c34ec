// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011): a counter-based generator. Each 128-bit counter under a 64-bit key
// maps to four independent 32-bit words, so element i of any random stream can
// be drawn directly, in any order, on any thread or GPU block: the numbers do
// not depend on how the work is split. Plain C++ that nvcc also compiles (the
// functions are marked host+device there).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PYDL_HOST_DEVICE __host__ __device__
#else
#define PYDL_HOST_DEVICE
#endif

namespace pydl {

struct Philox4x32 {
  std::uint32_t v[4];
};

// One round: two 32x32->64 products mix the counter words; the key enters by xor.
//   (c0, c1, c2, c3) -> (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))
PYDL_HOST_DEVICE inline Philox4x32 philox_round(Philox4x32 c, std::uint32_t k0,
                                                std::uint32_t k1) {
  const std::uint64_t p0 = static_cast<std::uint64_t>(0xD2511F53u) * c.v[0];
  const std::uint64_t p1 = static_cast<std::uint64_t>(0xCD9E8D57u) * c.v[2];
  Philox4x32 r;
  r.v[0] = static_cast<std::uint32_t>(p1 >> 32) ^ c.v[1] ^ k0;
  r.v[1] = static_cast<std::uint32_t>(p1);
  r.v[2] = static_cast<std::uint32_t>(p0 >> 32) ^ c.v[3] ^ k1;
  r.v[3] = static_cast<std::uint32_t>(p0);
  return r;
}

// Ten rounds; the key is bumped by the Weyl constants (golden ratio, sqrt(3)-1)
// between rounds.
PYDL_HOST_DEVICE inline Philox4x32 philox4x32_10(Philox4x32 counter, std::uint32_t k0,
                                                 std::uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    if (round) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    counter = philox_round(counter, k0, k1);
  }
  return counter;
}

// A random stream is named by (seed, offset): the seed is the key, the offset
// the upper half of the counter. Block `block` of the stream (elements 4*block
// .. 4*block+3) is the generator at counter (block, offset).
PYDL_HOST_DEVICE inline Philox4x32 philox_block(std::uint64_t seed, std::uint64_t offset,
                                                std::uint64_t block) {
  Philox4x32 c{{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(offset >> 32)}};
  return philox4x32_10(c, static_cast<std::uint32_t>(seed),
                       static_cast<std::uint32_t>(seed >> 32));
}

// A uniform float in [0, 1) from the top 24 bits (exactly representable).
PYDL_HOST_DEVICE inline float uniform_from_bits(std::uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

}  // namespace pydl
