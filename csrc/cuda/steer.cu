// CUDA kernels of the steering op. One warp per row of z: the row lives in registers
// (D <= 32 * PER_LANE), each step's dot product is a warp shuffle reduction, and z is read and the
// output written exactly once. Half and bfloat16 accumulate in float32. Runs on the current
// stream. Rows with D > 1024 take the ATen composition in steer_composite.cpp.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "steer.h"

namespace genint_fast {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kMaxPerLane = 32;  // D <= 1024 in registers

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__device__ __forceinline__ T clamp_val(T v, T c) {
  return v < -c ? -c : (v > c ? c : v);
}

// Steers the row held in v (pre-loaded with z) in place; muv holds mu, u is scratch.
template <typename scalar_t, typename acc_t, int PL>
__device__ __forceinline__ void steer_row(acc_t (&v)[PL], const acc_t (&muv)[PL],
                                          const scalar_t* __restrict__ U,
                                          const scalar_t* __restrict__ sigma,
                                          const int64_t* __restrict__ idx,
                                          const scalar_t* __restrict__ alpha, int D, int M,
                                          bool add_mode, int lane) {
  if (add_mode) {
#pragma unroll
    for (int j = 0; j < PL; ++j) v[j] -= muv[j];
  }
  for (int m = 0; m < M; ++m) {
    const int64_t k = idx[m];
    const scalar_t* __restrict__ u = U + k * D;
    acc_t uv[PL];
#pragma unroll
    for (int j = 0; j < PL; ++j) {
      const int d = lane + 32 * j;
      uv[j] = d < D ? static_cast<acc_t>(u[d]) : acc_t(0);
    }
    acc_t coef;
    if (add_mode) {
      coef = static_cast<acc_t>(sigma[k]) * static_cast<acc_t>(alpha[m]);
    } else {
      acc_t p = 0;
#pragma unroll
      for (int j = 0; j < PL; ++j) p += (v[j] - muv[j]) * uv[j];
      coef = static_cast<acc_t>(alpha[m]) - warp_sum(p);
    }
#pragma unroll
    for (int j = 0; j < PL; ++j) v[j] += coef * uv[j];
  }
}

template <typename scalar_t, typename acc_t, int PL>
__device__ __forceinline__ void load_row(acc_t (&v)[PL], const scalar_t* __restrict__ src, int D,
                                         int lane) {
#pragma unroll
  for (int j = 0; j < PL; ++j) {
    const int d = lane + 32 * j;
    v[j] = d < D ? static_cast<acc_t>(src[d]) : acc_t(0);
  }
}

template <typename scalar_t, int PL>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    steer_fwd_kernel(const scalar_t* __restrict__ z, const scalar_t* __restrict__ U,
                     const scalar_t* __restrict__ sigma, const scalar_t* __restrict__ mu,
                     const int64_t* __restrict__ idx, const scalar_t* __restrict__ alpha,
                     scalar_t* __restrict__ out, int64_t B, int D, int M, bool add_mode,
                     bool has_clamp, at::opmath_type<scalar_t> c) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= B) return;  // uniform across the warp
  acc_t v[PL], muv[PL];
  load_row<scalar_t, acc_t, PL>(v, z + row * D, D, lane);
  load_row<scalar_t, acc_t, PL>(muv, mu, D, lane);
  steer_row<scalar_t, acc_t, PL>(v, muv, U, sigma, idx + row * M, alpha + row * M, D, M, add_mode,
                                 lane);
  scalar_t* __restrict__ o = out + row * D;
#pragma unroll
  for (int j = 0; j < PL; ++j) {
    const int d = lane + 32 * j;
    if (d < D) o[d] = static_cast<scalar_t>(has_clamp ? clamp_val(v[j], c) : v[j]);
  }
}

template <typename scalar_t, int PL>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    steer_bwd_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ z,
                     const scalar_t* __restrict__ U, const scalar_t* __restrict__ sigma,
                     const scalar_t* __restrict__ mu, const int64_t* __restrict__ idx,
                     const scalar_t* __restrict__ alpha, scalar_t* __restrict__ grad_z,
                     at::opmath_type<scalar_t>* __restrict__ dots, int64_t B, int D, int M,
                     bool add_mode, bool has_clamp, at::opmath_type<scalar_t> c) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= B) return;
  const int64_t* __restrict__ ib = idx + row * M;
  acc_t g[PL];
  load_row<scalar_t, acc_t, PL>(g, grad + row * D, D, lane);
  if (has_clamp) {
    // Recompute the pre-clamp output: clamp passes gradient where -c <= x <= c.
    acc_t v[PL], muv[PL];
    load_row<scalar_t, acc_t, PL>(v, z + row * D, D, lane);
    load_row<scalar_t, acc_t, PL>(muv, mu, D, lane);
    steer_row<scalar_t, acc_t, PL>(v, muv, U, sigma, ib, alpha + row * M, D, M, add_mode, lane);
#pragma unroll
    for (int j = 0; j < PL; ++j) g[j] = (v[j] >= -c && v[j] <= c) ? g[j] : acc_t(0);
  }
  acc_t* __restrict__ db = dots + row * M;
  for (int step = 0; step < M; ++step) {
    // add: every step sees the same gradient; set: walk the steps backwards, projecting out u.
    const int m = add_mode ? step : M - 1 - step;
    const scalar_t* __restrict__ u = U + ib[m] * D;
    acc_t uv[PL];
    load_row<scalar_t, acc_t, PL>(uv, u, D, lane);
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
  scalar_t* __restrict__ gz = grad_z + row * D;
#pragma unroll
  for (int j = 0; j < PL; ++j) {
    const int d = lane + 32 * j;
    if (d < D) gz[d] = static_cast<scalar_t>(g[j]);
  }
}

// Calls f.template operator()<PL>() with the smallest PL in {1, 2, 4, ..., 32} with 32 * PL >= D.
template <typename F>
void dispatch_per_lane(int D, F&& f) {
  if (D <= 32) return f(std::integral_constant<int, 1>{});
  if (D <= 64) return f(std::integral_constant<int, 2>{});
  if (D <= 128) return f(std::integral_constant<int, 4>{});
  if (D <= 256) return f(std::integral_constant<int, 8>{});
  if (D <= 512) return f(std::integral_constant<int, 16>{});
  return f(std::integral_constant<int, kMaxPerLane>{});
}

dim3 grid_for(int64_t B) {
  return dim3(static_cast<unsigned>((B + kWarpsPerBlock - 1) / kWarpsPerBlock));
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
    dispatch_per_lane(static_cast<int>(D), [&](auto pl) {
      steer_fwd_kernel<scalar_t, decltype(pl)::value>
          <<<grid_for(B), kWarpsPerBlock * 32, 0, stream>>>(
              z.data_ptr<scalar_t>(), U.data_ptr<scalar_t>(), sigma.data_ptr<scalar_t>(),
              mu.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), alpha.data_ptr<scalar_t>(),
              out.data_ptr<scalar_t>(), B, static_cast<int>(D), static_cast<int>(M),
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
  at::Tensor dots = at::zeros({B, M}, z.options().dtype(steer_acc_dtype(z.scalar_type())));
  if (B == 0) return {grad_z, dots};
  if (D == 0) return {grad_z, dots};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, z.scalar_type(), "steer_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        dispatch_per_lane(static_cast<int>(D), [&](auto pl) {
          steer_bwd_kernel<scalar_t, decltype(pl)::value>
              <<<grid_for(B), kWarpsPerBlock * 32, 0, stream>>>(
                  grad.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), U.data_ptr<scalar_t>(),
                  sigma.data_ptr<scalar_t>(), mu.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
                  alpha.data_ptr<scalar_t>(), grad_z.data_ptr<scalar_t>(), dots.data_ptr<acc_t>(),
                  B, static_cast<int>(D), static_cast<int>(M), mode == SteerMode::Add,
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
