// The steering op's CUDA kernels (see steer.cu for the design), in a header of their own so that
// the same code also compiles for the host, where tests/cpp/test_steer_kernels_emulated.cpp runs
// it through the CUDA emulator (csrc/cuda/emulate_cuda.h, warp shuffles included) against a
// direct implementation, in CI, where no GPU is. Only the SK_* names differ between the builds.
#pragma once

#include <cstdint>

#ifdef GENINT_FAST_EMULATE_CUDA
#include "emulate_cuda.h"
#define SK_DEVICE inline
#define SK_GLOBAL inline void
#define SK_SHFL(v, lane) ::genint_fast::emu::shfl(v, lane)
#define SK_SHFL_XOR(v, mask) ::genint_fast::emu::shfl_xor(v, mask)
#define SK_ASSERT(cond) ::genint_fast::emu::check(cond, #cond)
#else
#include <c10/macros/Macros.h>
#define SK_DEVICE __device__ __forceinline__
#define SK_GLOBAL __global__ void __launch_bounds__(kWarpsPerBlock * 32)
#define SK_SHFL(v, lane) __shfl_sync(kFull, v, lane)
#define SK_SHFL_XOR(v, mask) __shfl_xor_sync(kFull, v, mask)
#define SK_ASSERT(cond) CUDA_KERNEL_ASSERT(cond)
#endif

namespace genint_fast {
namespace steer_kernels {

constexpr int kWarpsPerBlock = 8;
constexpr int kMaxPerLane = 32;  // D <= 1024 in registers
constexpr unsigned kFull = 0xffffffffu;

template <typename T>
SK_DEVICE T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += SK_SHFL_XOR(v, o);
  return v;
}

template <typename T>
SK_DEVICE T clamp_val(T v, T c) {
  return v < -c ? -c : (v > c ? c : v);
}

template <typename scalar_t, int VEC>
struct alignas(sizeof(scalar_t) * VEC) Vec {
  scalar_t v[VEC];
};

// Register j * VEC + e of a lane holds element (j * 32 + lane) * VEC + e of the row. D is a
// multiple of VEC, so a vector is either wholly inside the row or wholly outside.
template <typename scalar_t, typename acc_t, int PL, int VEC>
SK_DEVICE void load_row(acc_t (&v)[PL], const scalar_t* __restrict__ src, int D,
                                         int lane) {
#pragma unroll
  for (int j = 0; j < PL / VEC; ++j) {
    const int d = (j * 32 + lane) * VEC;
    if (d < D) {
      const Vec<scalar_t, VEC> w = *reinterpret_cast<const Vec<scalar_t, VEC>*>(src + d);
#pragma unroll
      for (int e = 0; e < VEC; ++e) v[j * VEC + e] = static_cast<acc_t>(w.v[e]);
    } else {
#pragma unroll
      for (int e = 0; e < VEC; ++e) v[j * VEC + e] = acc_t(0);
    }
  }
}

template <typename scalar_t, typename acc_t, int PL, int VEC>
SK_DEVICE void store_row(scalar_t* __restrict__ dst, const acc_t (&v)[PL], int D,
                                          int lane, bool has_clamp, acc_t c) {
#pragma unroll
  for (int j = 0; j < PL / VEC; ++j) {
    const int d = (j * 32 + lane) * VEC;
    if (d < D) {
      Vec<scalar_t, VEC> w;
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const acc_t x = v[j * VEC + e];
        w.v[e] = static_cast<scalar_t>(has_clamp ? clamp_val(x, c) : x);
      }
      *reinterpret_cast<Vec<scalar_t, VEC>*>(dst + d) = w;
    }
  }
}

// One row's steps: index, step and scale of step m. For M <= 32, lane m reads step m once and the
// others receive it by shuffle; longer rows read each step directly. An index outside [0, K)
// fails a device-side assert; were asserts compiled out, the step would be skipped rather than
// read outside `directions`.
template <typename scalar_t, typename acc_t>
struct RowSteps {
  int64_t k = 0;
  acc_t a = acc_t(0), s = acc_t(0);
  const int64_t* __restrict__ idx;
  const scalar_t* __restrict__ alpha;
  const scalar_t* __restrict__ sigma;
  int64_t K;
  int M;
  bool need_sigma;

  SK_DEVICE RowSteps(const int64_t* __restrict__ idx_,
                                      const scalar_t* __restrict__ alpha_,
                                      const scalar_t* __restrict__ sigma_, int64_t K_, int M_,
                                      bool need_sigma_, int lane)
      : idx(idx_), alpha(alpha_), sigma(sigma_), K(K_), M(M_), need_sigma(need_sigma_) {
    if (M <= 32 && lane < M) {
      k = idx[lane];
      a = static_cast<acc_t>(alpha[lane]);
      SK_ASSERT(k >= 0 && k < K && "steer: idx must lie in [0, K)");
      if (need_sigma && k >= 0 && k < K) s = static_cast<acc_t>(sigma[k]);
    }
  }

  // (index, step, scale) of step m; the index is -1 for an index out of range.
  SK_DEVICE void get(int m, int64_t& km, acc_t& am, acc_t& sm) const {
    if (M <= 32) {
      km = SK_SHFL(k, m);
      am = SK_SHFL(a, m);
      sm = SK_SHFL(s, m);
    } else {
      km = idx[m];
      am = static_cast<acc_t>(alpha[m]);
      SK_ASSERT(km >= 0 && km < K && "steer: idx must lie in [0, K)");
      sm = need_sigma && km >= 0 && km < K ? static_cast<acc_t>(sigma[km]) : acc_t(0);
    }
    if (km < 0 || km >= K) km = -1;
  }
};

// Steers the row held in v (pre-loaded with z) in place; muv holds mu.
template <typename scalar_t, typename acc_t, int PL, int VEC>
SK_DEVICE void steer_row(acc_t (&v)[PL], const acc_t (&muv)[PL],
                                          const scalar_t* __restrict__ U,
                                          const RowSteps<scalar_t, acc_t>& steps, int D,
                                          bool add_mode, int lane) {
  if (add_mode) {
#pragma unroll
    for (int j = 0; j < PL; ++j) v[j] -= muv[j];
  }
#pragma unroll 2
  for (int m = 0; m < steps.M; ++m) {
    int64_t k;
    acc_t am, sm;
    steps.get(m, k, am, sm);
    if (k < 0) continue;  // uniform across the warp
    acc_t uv[PL];
    load_row<scalar_t, acc_t, PL, VEC>(uv, U + k * D, D, lane);
    acc_t coef;
    if (add_mode) {
      coef = sm * am;
    } else {
      acc_t p = 0;
#pragma unroll
      for (int j = 0; j < PL; ++j) p += (v[j] - muv[j]) * uv[j];
      coef = am - warp_sum(p);
    }
#pragma unroll
    for (int j = 0; j < PL; ++j) v[j] += coef * uv[j];
  }
}

// Rows per warp in the forward kernel: two for rows of up to 256 elements, so that each warp has
// two rows' loads in flight (the op is bound by memory latency, not arithmetic); one above that,
// where two rows would no longer fit the registers.
template <int PL>
constexpr int fwd_rows_per_warp() {
  return PL <= 8 ? 2 : 1;
}

template <typename scalar_t, typename acc_t, int PL, int VEC>
SK_GLOBAL
    steer_fwd_kernel(const scalar_t* __restrict__ z, const scalar_t* __restrict__ U,
                     const scalar_t* __restrict__ sigma, const scalar_t* __restrict__ mu,
                     const int64_t* __restrict__ idx, const scalar_t* __restrict__ alpha,
                     scalar_t* __restrict__ out, int64_t B, int64_t K, int D, int M,
                     bool add_mode, bool has_clamp, acc_t c) {
  constexpr int R = fwd_rows_per_warp<PL>();
  const int lane = threadIdx.x & 31;
  const int64_t first =
      (static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5)) * R;
  if (first >= B) return;  // uniform across the warp
  // All R rows' loads are issued before the first row is steered. A missing last row repeats
  // the previous one (read, not written).
  int64_t rows[R];
  acc_t v[R][PL], muv[PL];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    rows[r] = first + r < B ? first + r : first;
    load_row<scalar_t, acc_t, PL, VEC>(v[r], z + rows[r] * D, D, lane);
  }
  load_row<scalar_t, acc_t, PL, VEC>(muv, mu, D, lane);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const RowSteps<scalar_t, acc_t> steps(idx + rows[r] * M, alpha + rows[r] * M, sigma, K, M,
                                          add_mode, lane);
    steer_row<scalar_t, acc_t, PL, VEC>(v[r], muv, U, steps, D, add_mode, lane);
    if (r == 0 || first + r < B)
      store_row<scalar_t, acc_t, PL, VEC>(out + rows[r] * D, v[r], D, lane, has_clamp, c);
  }
}

template <typename scalar_t, typename acc_t, int PL, int VEC>
SK_GLOBAL
    steer_bwd_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ z,
                     const scalar_t* __restrict__ U, const scalar_t* __restrict__ sigma,
                     const scalar_t* __restrict__ mu, const int64_t* __restrict__ idx,
                     const scalar_t* __restrict__ alpha, scalar_t* __restrict__ grad_z,
                     acc_t* __restrict__ dots, int64_t B, int64_t K, int D,
                     int M, bool add_mode, bool has_clamp, acc_t c) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= B) return;
  const RowSteps<scalar_t, acc_t> steps(idx + row * M, alpha + row * M, sigma, K, M,
                                        add_mode && has_clamp, lane);
  acc_t g[PL];
  load_row<scalar_t, acc_t, PL, VEC>(g, grad + row * D, D, lane);
  if (has_clamp) {
    // Recompute the pre-clamp output: clamp passes gradient where -c <= x <= c.
    acc_t v[PL], muv[PL];
    load_row<scalar_t, acc_t, PL, VEC>(v, z + row * D, D, lane);
    load_row<scalar_t, acc_t, PL, VEC>(muv, mu, D, lane);
    steer_row<scalar_t, acc_t, PL, VEC>(v, muv, U, steps, D, add_mode, lane);
#pragma unroll
    for (int j = 0; j < PL; ++j) g[j] = (v[j] >= -c && v[j] <= c) ? g[j] : acc_t(0);
  }
  acc_t* __restrict__ db = dots + row * M;
  for (int step = 0; step < M; ++step) {
    // add: every step sees the same gradient; set: walk the steps backwards, projecting out u.
    const int m = add_mode ? step : M - 1 - step;
    int64_t k;
    acc_t am, sm;
    steps.get(m, k, am, sm);
    if (k < 0) {
      if (lane == 0) db[m] = acc_t(0);
      continue;
    }
    acc_t uv[PL];
    load_row<scalar_t, acc_t, PL, VEC>(uv, U + k * D, D, lane);
    acc_t s = 0;
#pragma unroll
    for (int j = 0; j < PL; ++j) s += g[j] * uv[j];
    s = warp_sum(s);
    if (lane == 0) db[m] = s;
    if (!add_mode) {
#pragma unroll
      for (int j = 0; j < PL; ++j) g[j] -= s * uv[j];
    }
  }
  store_row<scalar_t, acc_t, PL, VEC>(grad_z + row * D, g, D, lane, false, acc_t(0));
}

}  // namespace steer_kernels
}  // namespace genint_fast
