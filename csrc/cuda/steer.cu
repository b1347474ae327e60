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
#include <torch/library.h>

#include "steer.h"
#include "steer_kernels.cuh"

namespace genint_fast {
namespace {

using namespace steer_kernels;

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
      steer_fwd_kernel<scalar_t, acc_t, decltype(pl)::value, decltype(vec)::value>
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
          steer_bwd_kernel<scalar_t, acc_t, decltype(pl)::value, decltype(vec)::value>
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
