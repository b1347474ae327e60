// CUDA kernels of the steering op. One warp per row of z: the row lives in registers
// (D <= 32 * PER_LANE), each step's dot product is a warp shuffle reduction, and z is read and the
// output written exactly once. Rows are read and written in VEC-element vectors (16 bytes for
// float32) where D and the pointers allow it. A row's step indices, steps and scales (M <= 32) are
// read once by M lanes and broadcast by shuffles, so the loads of the row, its indices and its
// directions overlap instead of forming a chain. Every index is checked on the device (a
// device-side assert, as ATen's indexing does): no host synchronisation, so the op can be
// captured in a CUDA graph. Half and bfloat16 accumulate in float32. Runs on the current stream.
// Rows with D > 1024 take the ATen composition in steer_composite.cpp.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "steer.h"

namespace genint_fast {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kMaxPerLane = 32;  // D <= 1024 in registers
constexpr unsigned kFull = 0xffffffffu;

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

template <typename T>
__device__ __forceinline__ T clamp_val(T v, T c) {
  return v < -c ? -c : (v > c ? c : v);
}

template <typename scalar_t, int VEC>
struct alignas(sizeof(scalar_t) * VEC) Vec {
  scalar_t v[VEC];
};

// Register j * VEC + e of a lane holds element (j * 32 + lane) * VEC + e of the row. D is a
// multiple of VEC, so a vector is either wholly inside the row or wholly outside.
template <typename scalar_t, typename acc_t, int PL, int VEC>
__device__ __forceinline__ void load_row(acc_t (&v)[PL], const scalar_t* __restrict__ src, int D,
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
__device__ __forceinline__ void store_row(scalar_t* __restrict__ dst, const acc_t (&v)[PL], int D,
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

  __device__ __forceinline__ RowSteps(const int64_t* __restrict__ idx_,
                                      const scalar_t* __restrict__ alpha_,
                                      const scalar_t* __restrict__ sigma_, int64_t K_, int M_,
                                      bool need_sigma_, int lane)
      : idx(idx_), alpha(alpha_), sigma(sigma_), K(K_), M(M_), need_sigma(need_sigma_) {
    if (M <= 32 && lane < M) {
      k = idx[lane];
      a = static_cast<acc_t>(alpha[lane]);
      CUDA_KERNEL_ASSERT(k >= 0 && k < K && "steer: idx must lie in [0, K)");
      if (need_sigma && k >= 0 && k < K) s = static_cast<acc_t>(sigma[k]);
    }
  }

  // (index, step, scale) of step m; the index is -1 for an index out of range.
  __device__ __forceinline__ void get(int m, int64_t& km, acc_t& am, acc_t& sm) const {
    if (M <= 32) {
      km = __shfl_sync(kFull, k, m);
      am = __shfl_sync(kFull, a, m);
      sm = __shfl_sync(kFull, s, m);
    } else {
      km = idx[m];
      am = static_cast<acc_t>(alpha[m]);
      CUDA_KERNEL_ASSERT(km >= 0 && km < K && "steer: idx must lie in [0, K)");
      sm = need_sigma && km >= 0 && km < K ? static_cast<acc_t>(sigma[km]) : acc_t(0);
    }
    if (km < 0 || km >= K) km = -1;
  }
};

// Steers the row held in v (pre-loaded with z) in place; muv holds mu.
template <typename scalar_t, typename acc_t, int PL, int VEC>
__device__ __forceinline__ void steer_row(acc_t (&v)[PL], const acc_t (&muv)[PL],
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

template <typename scalar_t, int PL, int VEC>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    steer_fwd_kernel(const scalar_t* __restrict__ z, const scalar_t* __restrict__ U,
                     const scalar_t* __restrict__ sigma, const scalar_t* __restrict__ mu,
                     const int64_t* __restrict__ idx, const scalar_t* __restrict__ alpha,
                     scalar_t* __restrict__ out, int64_t B, int64_t K, int D, int M,
                     bool add_mode, bool has_clamp, at::opmath_type<scalar_t> c) {
  using acc_t = at::opmath_type<scalar_t>;
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

template <typename scalar_t, int PL, int VEC>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    steer_bwd_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ z,
                     const scalar_t* __restrict__ U, const scalar_t* __restrict__ sigma,
                     const scalar_t* __restrict__ mu, const int64_t* __restrict__ idx,
                     const scalar_t* __restrict__ alpha, scalar_t* __restrict__ grad_z,
                     at::opmath_type<scalar_t>* __restrict__ dots, int64_t B, int64_t K, int D,
                     int M, bool add_mode, bool has_clamp, at::opmath_type<scalar_t> c) {
  using acc_t = at::opmath_type<scalar_t>;
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

// Calls f(PL, VEC) with the smallest PL in {1, 2, 4, ..., 32} with 32 * PL >= D, and VEC = 4
// (vector loads and stores) where PL >= 4, D is a multiple of 4 and every row pointer is aligned
// to 4 elements; VEC = 1 otherwise.
template <typename F>
void dispatch_per_lane(int D, bool vec_ok, F&& f) {
  using std::integral_constant;
  if (D <= 32) return f(integral_constant<int, 1>{}, integral_constant<int, 1>{});
  if (D <= 64) return f(integral_constant<int, 2>{}, integral_constant<int, 1>{});
  vec_ok = vec_ok && D % 4 == 0;
  if (D <= 128)
    return vec_ok ? f(integral_constant<int, 4>{}, integral_constant<int, 4>{})
                  : f(integral_constant<int, 4>{}, integral_constant<int, 1>{});
  if (D <= 256)
    return vec_ok ? f(integral_constant<int, 8>{}, integral_constant<int, 4>{})
                  : f(integral_constant<int, 8>{}, integral_constant<int, 1>{});
  if (D <= 512)
    return vec_ok ? f(integral_constant<int, 16>{}, integral_constant<int, 4>{})
                  : f(integral_constant<int, 16>{}, integral_constant<int, 1>{});
  return vec_ok ? f(integral_constant<int, kMaxPerLane>{}, integral_constant<int, 4>{})
                : f(integral_constant<int, kMaxPerLane>{}, integral_constant<int, 1>{});
}

// True when every tensor's data starts on a 4-element boundary (rows then do too, D % 4 == 0).
bool aligned4(std::initializer_list<const at::Tensor*> ts) {
  for (const at::Tensor* t : ts) {
    const auto addr = reinterpret_cast<uintptr_t>(t->data_ptr());
    if (addr % (4 * t->element_size()) != 0) return false;
  }
  return true;
}

dim3 grid_for(int64_t B, int rows_per_warp = 1) {
  const int64_t per_block = static_cast<int64_t>(kWarpsPerBlock) * rows_per_warp;
  return dim3(static_cast<unsigned>((B + per_block - 1) / per_block));
}

at::Tensor steer_cuda(const at::Tensor& z_, const at::Tensor& U_, const at::Tensor& sigma_,
                      const at::Tensor& mu_, const at::Tensor& idx_, const at::Tensor& alpha_,
                      c10::string_view mode_str, std::optional<double> clamp) {
  check_steer_inputs(z_, U_, sigma_, mu_, idx_, alpha_, clamp);
  const SteerMode mode = parse_steer_mode(mode_str);
  const c10::cuda::CUDAGuard guard(z_.device());
  const int64_t B = z_.size(0), D = z_.size(1), M = idx_.size(1);
  if (D > 32 * kMaxPerLane) return steer_composite(z_, U_, sigma_, mu_, idx_, alpha_, mode, clamp);
  auto z = z_.contiguous(), U = U_.contiguous(), sigma = sigma_.contiguous(),
       mu = mu_.contiguous(), idx = idx_.contiguous(), alpha = alpha_.contiguous();
  at::Tensor out = at::empty_like(z);
  if (B == 0 || D == 0) return out;
  TORCH_CHECK(M <= INT32_MAX, "steer: M too large");
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "steer_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const bool vec_ok = aligned4({&z, &U, &mu, &out});
    dispatch_per_lane(static_cast<int>(D), vec_ok, [&](auto pl, auto vec) {
      steer_fwd_kernel<scalar_t, decltype(pl)::value, decltype(vec)::value>
          <<<grid_for(B, fwd_rows_per_warp<decltype(pl)::value>()), kWarpsPerBlock * 32, 0,
             stream>>>(
              z.data_ptr<scalar_t>(), U.data_ptr<scalar_t>(), sigma.data_ptr<scalar_t>(),
              mu.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), alpha.data_ptr<scalar_t>(),
              out.data_ptr<scalar_t>(), B, U.size(0), static_cast<int>(D), static_cast<int>(M),
              mode == SteerMode::Add, clamp.has_value(),
              clamp.has_value() ? static_cast<acc_t>(*clamp) : acc_t(0));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> steer_backward_cuda(
    const at::Tensor& grad_, const at::Tensor& z_, const at::Tensor& U_, const at::Tensor& sigma_,
    const at::Tensor& mu_, const at::Tensor& idx_, const at::Tensor& alpha_,
    c10::string_view mode_str, std::optional<double> clamp) {
  check_steer_inputs(z_, U_, sigma_, mu_, idx_, alpha_, clamp, &grad_);
  const SteerMode mode = parse_steer_mode(mode_str);
  const c10::cuda::CUDAGuard guard(z_.device());
  const int64_t B = z_.size(0), D = z_.size(1), M = idx_.size(1);
  if (D > 32 * kMaxPerLane)
    return steer_backward_composite(grad_, z_, U_, sigma_, mu_, idx_, alpha_, mode, clamp);
  auto z = z_.contiguous(), U = U_.contiguous(), sigma = sigma_.contiguous(),
       mu = mu_.contiguous(), idx = idx_.contiguous(), alpha = alpha_.contiguous(),
       grad = grad_.contiguous();
  at::Tensor grad_z = at::empty_like(z);
  // Every row writes all M of its dots.
  at::Tensor dots = at::empty({B, M}, z.options().dtype(steer_acc_dtype(z.scalar_type())));
  if (B == 0 || M == 0) return {grad_z, dots};
  if (D == 0) return {grad_z, dots.zero_()};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, z.scalar_type(), "steer_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const bool vec_ok = aligned4({&grad, &z, &U, &mu, &grad_z});
        dispatch_per_lane(static_cast<int>(D), vec_ok, [&](auto pl, auto vec) {
          steer_bwd_kernel<scalar_t, decltype(pl)::value, decltype(vec)::value>
              <<<grid_for(B), kWarpsPerBlock * 32, 0, stream>>>(
                  grad.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), U.data_ptr<scalar_t>(),
                  sigma.data_ptr<scalar_t>(), mu.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
                  alpha.data_ptr<scalar_t>(), grad_z.data_ptr<scalar_t>(), dots.data_ptr<acc_t>(),
                  B, U.size(0), static_cast<int>(D), static_cast<int>(M), mode == SteerMode::Add,
                  clamp.has_value(), clamp.has_value() ? static_cast<acc_t>(*clamp) : acc_t(0));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  return {grad_z, dots};
}

}  // namespace

TORCH_LIBRARY_IMPL(genint_fast, CUDA, m) {
  m.impl("steer", &steer_cuda);
  m.impl("steer_backward", &steer_backward_cuda);
}

}  // namespace genint_fast
