// Register-tiled kernel of the Gaussian cross sum without gradient,
//   partial[b, tile] = sum over the tile's (i, j) of exp(-gamma * max(|a_i|^2 + |b_j|^2 - 2 a_i.b_j, 0)),
// for the forward pass of genint_fast.ops.mmd when no gradient is asked (evaluation, cached
// targets, no_grad). One block of 256 threads owns a 64 x 64 tile of (rows of A) x (rows of B)
// and walks C in chunks of 32: both chunks sit in shared memory transposed (C-major), and each
// thread accumulates a 4 x 4 block of dot products in registers from two 16-byte shared loads
// per step of C (the mmd_cross_kernel reads one shared float per multiply-add). The squared norms
// come precomputed. Each block writes its own float64 total; the caller sums them in a fixed
// order (deterministic). float32 only.
//
// The file is plain C++ apart from the few names behind the GFT_* macros, so the same kernel also
// compiles for the host, where tests/cpp/test_gauss_sum_tiled.cpp runs it block by block with one
// std::thread per CUDA thread (an emulator: it checks the indexing, masking and reduction against
// a direct sum, not the memory model or the speed).
#pragma once

#include <cstdint>

#ifdef GENINT_FAST_EMULATE_CUDA
#include "emulate_cuda.h"
#define GFT_GLOBAL inline void
#define GFT_SHARED static
#define GFT_SYNC() ::genint_fast::emu::syncthreads()
#define GFT_EXP(x) std::exp(x)
#else
#define GFT_GLOBAL __global__ void __launch_bounds__(256)
#define GFT_SHARED __shared__
#define GFT_SYNC() __syncthreads()
#define GFT_EXP(x) expf(x)
#endif

namespace genint_fast {
namespace tiled {

constexpr int kRows = 64;       // rows of A per block
constexpr int kCols = 64;       // rows of B per block
constexpr int kChunk = 32;      // channels per shared-memory chunk
constexpr int kThreads = 256;   // 16 x 16 threads, 4 x 4 outputs each
constexpr int kLd = kRows + 4;  // padded row of the transposed chunks (16-byte aligned)

struct alignas(16) F4 {
  float x, y, z, w;
};

// grid: (ceil(N / 64), ceil(M / 64), batch); partial: (batch, gridDim.x * gridDim.y).
// A: (., N, C) rows contiguous, batch stride a_bs (0 broadcasts); na: squared norms (., N), batch
// stride na_bs; likewise B, nb for (., M, C).
GFT_GLOBAL
gauss_sum_tiled_kernel(const float* __restrict__ A, int64_t a_bs, const float* __restrict__ na,
                       int64_t na_bs, const float* __restrict__ B, int64_t b_bs,
                       const float* __restrict__ nb, int64_t nb_bs, int N, int M, int C,
                       float gamma, double* __restrict__ partial) {
  alignas(16) GFT_SHARED float As[kChunk][kLd];
  alignas(16) GFT_SHARED float Bs[kChunk][kLd];
  GFT_SHARED double red[kThreads];

  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % 16, ty = tid / 16;
  const int b = static_cast<int>(blockIdx.z);
  const int row0 = static_cast<int>(blockIdx.x) * kRows;
  const int col0 = static_cast<int>(blockIdx.y) * kCols;
  const float* __restrict__ Ab = A + b * a_bs;
  const float* __restrict__ Bb = B + b * b_bs;

  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  }

  for (int k0 = 0; k0 < C; k0 += kChunk) {
    // 64 rows x 32 channels of A and of B: 8 values per thread each; a warp reads one row's 32
    // consecutive channels (coalesced) and stores them down a column of the transposed chunk.
#pragma unroll
    for (int e = 0; e < kRows * kChunk / kThreads; ++e) {
      const int idx = tid + kThreads * e;
      const int r = idx / kChunk, c = idx % kChunk;
      const int gc = k0 + c;
      const int ga = row0 + r, gb = col0 + r;
      As[c][r] = (ga < N && gc < C) ? Ab[static_cast<int64_t>(ga) * C + gc] : 0.f;
      Bs[c][r] = (gb < M && gc < C) ? Bb[static_cast<int64_t>(gb) * C + gc] : 0.f;
    }
    GFT_SYNC();
#pragma unroll 8
    for (int k = 0; k < kChunk; ++k) {
      const F4 a = *reinterpret_cast<const F4*>(&As[k][ty * 4]);
      const F4 v = *reinterpret_cast<const F4*>(&Bs[k][tx * 4]);
      const float av[4] = {a.x, a.y, a.z, a.w};
      const float bv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
      }
    }
    GFT_SYNC();  // the chunks are read before the next ones overwrite them
  }

  float local = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = row0 + ty * 4 + i;
    if (r >= N) continue;
    const float nr = na[b * na_bs + r];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int c = col0 + tx * 4 + j;
      if (c >= M) continue;
      float d = nr + nb[b * nb_bs + c] - 2.f * acc[i][j];
      d = d < 0.f ? 0.f : d;  // rounding; NaN stays NaN
      local += GFT_EXP(-gamma * d);
    }
  }

  // Block total in float64, tree-reduced in a fixed order.
  red[tid] = static_cast<double>(local);
  GFT_SYNC();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (tid < s) red[tid] += red[tid + s];
    GFT_SYNC();
  }
  if (tid == 0) {
    const int64_t tiles = static_cast<int64_t>(gridDim.x) * gridDim.y;
    partial[b * tiles + static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x] = red[0];
  }
}

}  // namespace tiled
}  // namespace genint_fast
