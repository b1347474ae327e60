// The CUDA kernel of the Gaussian MMD cross term (see mmd.cu for the design), in a header of its
// own so that the same code also compiles for the host, where
// tests/cpp/test_mmd_kernels_emulated.cpp runs it through the CUDA emulator (emulate_cuda.h)
// against a direct float64 sum and gradient, in CI, where no GPU is. Only the MK_* names differ.
#pragma once

#include <cstdint>

#ifdef GENINT_FAST_EMULATE_CUDA
#include "emulate_cuda.h"
#define MK_DEVICE inline
#define MK_GLOBAL inline void
#define MK_SHARED static
// Dynamic shared memory: one static buffer as large as the largest launch (C <= 512).
#define MK_DYNAMIC_SHARED(T, name) alignas(16) static T name[2 * 32 * 513 + 32 * 33 + 64]
#define MK_SYNC() ::genint_fast::emu::syncthreads()
#define MK_SHFL_XOR(v, mask) ::genint_fast::emu::shfl_xor(v, mask)
#define MK_EXP(x) std::exp(x)
#else
#define MK_DEVICE __device__ __forceinline__
#define MK_GLOBAL __global__ void __launch_bounds__(kThreads)
#define MK_SHARED __shared__
#define MK_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#define MK_SYNC() __syncthreads()
#define MK_SHFL_XOR(v, mask) __shfl_xor_sync(0xffffffffu, v, mask)
#define MK_EXP(x) expf(x)
#endif

namespace genint_fast {
namespace mmd_kernels {

constexpr int kTile = 32;
constexpr int kThreads = 256;
constexpr int kGroup = kThreads / kTile;  // 8 threads share one row of A
constexpr int kMaxC = 512;

MK_DEVICE int imin(int a, int b) { return a < b ? a : b; }

MK_DEVICE double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += MK_SHFL_XOR(v, o);
  return v;
}

// CPT: gradient columns per thread, C <= kGroup * CPT.
template <int CPT>
MK_GLOBAL
    mmd_cross_kernel(const float* __restrict__ A, int64_t a_batch_stride,
                     const float* __restrict__ B, int64_t b_batch_stride, int N, int M, int C,
                     float gamma, double* __restrict__ partial, float* __restrict__ G) {
  MK_DYNAMIC_SHARED(float, smem);
  const int ld = C + 1;
  float* As = smem;                          // kTile x ld
  float* Bs = As + kTile * ld;               // kTile x ld
  float* Ks = Bs + kTile * ld;               // kTile x (kTile + 1)
  float* na = Ks + kTile * (kTile + 1);      // kTile
  float* nbv = na + kTile;                   // kTile
  MK_SHARED double red[kThreads / 32];

  const int b = blockIdx.y;
  const int row0 = blockIdx.x * kTile;
  const int tid = threadIdx.x;
  const float* __restrict__ Ab = A + b * a_batch_stride;
  const float* __restrict__ Bb = B + b * b_batch_stride;
  const int ra = imin(kTile, N - row0);

  for (int e = tid; e < kTile * C; e += kThreads) {
    const int i = e / C, c = e - i * C;
    As[i * ld + c] = i < ra ? Ab[static_cast<int64_t>(row0 + i) * C + c] : 0.f;
  }
  MK_SYNC();
  if (tid < kTile) {
    float s = 0.f;
    for (int c = 0; c < C; ++c) s += As[tid * ld + c] * As[tid * ld + c];
    na[tid] = s;
  }

  const int i = tid / kGroup;   // this thread's row of the tile
  const int jg = tid % kGroup;  // its columns jg, jg + 8, jg + 16, jg + 24
  double local = 0.0;
  float rs = 0.f;
  float acc[CPT];
#pragma unroll
  for (int q = 0; q < CPT; ++q) acc[q] = 0.f;

  for (int m0 = 0; m0 < M; m0 += kTile) {
    const int rb = imin(kTile, M - m0);
    MK_SYNC();  // the previous chunk is done with Bs, Ks (and na is written)
    for (int e = tid; e < kTile * C; e += kThreads) {
      const int j = e / C, c = e - j * C;
      Bs[j * ld + c] = j < rb ? Bb[static_cast<int64_t>(m0 + j) * C + c] : 0.f;
    }
    MK_SYNC();
    if (tid < kTile) {
      float s = 0.f;
      for (int c = 0; c < C; ++c) s += Bs[tid * ld + c] * Bs[tid * ld + c];
      nbv[tid] = s;
    }
    float dot[kTile / kGroup];
#pragma unroll
    for (int q = 0; q < kTile / kGroup; ++q) dot[q] = 0.f;
    for (int c = 0; c < C; ++c) {
      const float a = As[i * ld + c];
#pragma unroll
      for (int q = 0; q < kTile / kGroup; ++q) dot[q] += a * Bs[(jg + kGroup * q) * ld + c];
    }
    MK_SYNC();  // nbv is written
    float chunk = 0.f;
#pragma unroll
    for (int q = 0; q < kTile / kGroup; ++q) {
      const int j = jg + kGroup * q;
      float kv = 0.f;
      if (i < ra && j < rb) {
        float d = na[i] + nbv[j] - 2.f * dot[q];
        d = d < 0.f ? 0.f : d;  // rounding; NaN stays NaN
        kv = MK_EXP(-gamma * d);
        chunk += kv;
      }
      Ks[i * (kTile + 1) + j] = kv;
    }
    local += static_cast<double>(chunk);
    if (G != nullptr) {
      MK_SYNC();  // Ks is complete
#pragma unroll 4
      for (int j = 0; j < kTile; ++j) {
        const float kij = Ks[i * (kTile + 1) + j];
        rs += kij;
        const float* __restrict__ brow = Bs + j * ld;
#pragma unroll
        for (int q = 0; q < CPT; ++q) {
          const int c = jg + kGroup * q;
          if (c < C) acc[q] += kij * brow[c];
        }
      }
    }
  }

  // Block total, in a fixed order.
  local = warp_sum_d(local);
  if ((tid & 31) == 0) red[tid >> 5] = local;
  MK_SYNC();
  if (tid == 0) {
    double s = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) s += red[w];
    partial[static_cast<int64_t>(b) * gridDim.x + blockIdx.x] = s;
  }
  if (G != nullptr && i < ra) {
    float* __restrict__ g = G + (static_cast<int64_t>(b) * N + row0 + i) * C;
#pragma unroll
    for (int q = 0; q < CPT; ++q) {
      const int c = jg + kGroup * q;
      if (c < C) g[c] = rs * As[i * ld + c] - acc[q];
    }
  }
}

}  // namespace mmd_kernels
}  // namespace genint_fast
