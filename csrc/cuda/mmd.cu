// CUDA kernel of the Gaussian-kernel MMD cross term (see mmd.h for the notation).
//
// One block of 256 threads owns kTile = 32 rows of A (one batch element) and walks B in chunks of
// 32 rows. The A tile and the current B chunk sit in shared memory as float32 (rows padded by
// one float against bank conflicts); each thread computes 4 dot products of the 32 x 32 tile,
// turns them into kernel values exp(-gamma max(|a|^2 + |b|^2 - 2 a.b, 0)) and writes them to a
// shared 32 x 33 tile; for the gradient each thread then accumulates its C / 8 columns of
// (K B) for one row in registers, together with the row sum. Everything accumulates in float32
// (half and bfloat16 inputs are converted to float32 before the kernel by mmd_gaussian_assemble),
// the per-block totals in float64, reduced in a fixed order: results are deterministic.
// Widths C > 512, float64 inputs and widths whose tiles need more shared memory than the device
// grants one block (sharedMemPerBlockOptin: C > 377 on sm_86 / sm_89, C > 237 on sm_75) take the
// ATen tiled composition in mmd.h. Runs on the current stream; no N x M matrix is formed.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "gauss_sum_tiled.cuh"
#include "mmd_kernels.cuh"
#include "mmd.h"

namespace genint_fast {
namespace {

using namespace mmd_kernels;

size_t cross_smem_bytes(int64_t C) {
  return sizeof(float) * (2 * kTile * (C + 1) + kTile * (kTile + 1) + 2 * kTile);
}

// The shared memory one block may use on the current device (after raising the dynamic limit).
// GENINT_FAST_CUDA_SMEM_LIMIT (bytes) lowers it, so that the tests can take the fallback on any GPU.
size_t block_smem_limit() {
  size_t limit = at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin;
  if (const char* env = std::getenv("GENINT_FAST_CUDA_SMEM_LIMIT")) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(env, &end, 10);
    if (end != env && *end == '\0') limit = std::min<size_t>(limit, v);
  }
  return limit;
}

template <int CPT>
void launch_cross(const at::Tensor& A, const at::Tensor& B, double gamma, const at::Tensor& partial,
                  float* G, int64_t nb) {
  const int N = static_cast<int>(A.size(1)), M = static_cast<int>(B.size(1)),
            C = static_cast<int>(A.size(2));
  const size_t smem = cross_smem_bytes(C);
  auto kernel = mmd_cross_kernel<CPT>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>((N + kTile - 1) / kTile), static_cast<unsigned>(nb));
  kernel<<<grid, kThreads, smem, c10::cuda::getCurrentCUDAStream()>>>(
      A.data_ptr<float>(), A.size(0) == 1 ? 0 : A.stride(0), B.data_ptr<float>(),
      B.size(0) == 1 ? 0 : B.stride(0), N, M, C, static_cast<float>(gamma),
      partial.data_ptr<double>(), G);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// GENINT_FAST_GAUSSIAN_KERNEL=tiled routes sums without gradient to the register-tiled kernel of
// gauss_sum_tiled.cuh (checked by the host emulator and the CUDA tests, not yet timed on a GPU;
// hence opt-in). Read per call, so a benchmark can compare both in one process.
bool use_tiled_sum() {
  const char* env = std::getenv("GENINT_FAST_GAUSSIAN_KERNEL");
  return env != nullptr && std::strcmp(env, "tiled") == 0;
}

std::tuple<at::Tensor, at::Tensor> tiled_sum_cuda(const at::Tensor& A, const at::Tensor& B,
                                                  double gamma) {
  const int64_t nb = std::max(A.size(0), B.size(0));
  const int64_t N = A.size(1), M = B.size(1), C = A.size(2);
  const auto na = A.square().sum(-1).contiguous();  // (Ba, N)
  const auto nbn = B.square().sum(-1).contiguous();  // (Bb, M)
  const dim3 grid(static_cast<unsigned>((N + tiled::kRows - 1) / tiled::kRows),
                  static_cast<unsigned>((M + tiled::kCols - 1) / tiled::kCols),
                  static_cast<unsigned>(nb));
  auto partial = at::empty({nb, static_cast<int64_t>(grid.x) * grid.y},
                           A.options().dtype(at::kDouble));
  tiled::gauss_sum_tiled_kernel<<<grid, tiled::kThreads, 0,
                                  c10::cuda::getCurrentCUDAStream()>>>(
      A.data_ptr<float>(), A.size(0) == 1 ? 0 : A.stride(0), na.data_ptr<float>(),
      A.size(0) == 1 ? 0 : N, B.data_ptr<float>(), B.size(0) == 1 ? 0 : B.stride(0),
      nbn.data_ptr<float>(), B.size(0) == 1 ? 0 : M, static_cast<int>(N), static_cast<int>(M),
      static_cast<int>(C), static_cast<float>(gamma), partial.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {partial.sum(1), at::Tensor()};
}

std::tuple<at::Tensor, at::Tensor> cross_cuda(const at::Tensor& A, const at::Tensor& B,
                                              double gamma, bool want_grad) {
  if (!want_grad && use_tiled_sum() && A.scalar_type() == at::kFloat && A.size(2) > 0 &&
      A.size(1) <= INT32_MAX / 2 && B.size(1) <= INT32_MAX / 2 &&
      (B.size(1) + tiled::kCols - 1) / tiled::kCols <= 65535 &&
      std::max(A.size(0), B.size(0)) <= 65535) {
    return tiled_sum_cuda(A, B, gamma);
  }
  const int64_t C = A.size(2);
  if (A.scalar_type() != at::kFloat || C > kMaxC || C == 0 || A.size(1) > INT32_MAX / 2 ||
      B.size(1) > INT32_MAX / 2 || cross_smem_bytes(C) > block_smem_limit()) {
    return mmd_cross_composite(A, B, gamma, want_grad);
  }
  const int64_t nb = std::max(A.size(0), B.size(0));
  TORCH_CHECK(nb <= 65535, "mmd_gaussian: batch too large for the CUDA kernel (", nb, " > 65535)");
  const int64_t N = A.size(1);
  const int64_t blocks = (N + kTile - 1) / kTile;
  auto partial = at::empty({nb, blocks}, A.options().dtype(at::kDouble));
  at::Tensor G = want_grad ? at::empty({nb, N, C}, A.options()) : at::Tensor();
  float* g = want_grad ? G.data_ptr<float>() : nullptr;
  if (C <= 64) {
    launch_cross<8>(A, B, gamma, partial, g, nb);
  } else if (C <= 128) {
    launch_cross<16>(A, B, gamma, partial, g, nb);
  } else if (C <= 256) {
    launch_cross<32>(A, B, gamma, partial, g, nb);
  } else {
    launch_cross<64>(A, B, gamma, partial, g, nb);
  }
  return {partial.sum(1), G};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mmd_gaussian_cuda(
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& gamma, bool unbiased,
    bool grad_x, bool grad_y, const std::optional<at::Tensor>& yy) {
  check_mmd_gaussian_inputs(x, y, gamma, unbiased, grad_y, yy);
  const c10::cuda::CUDAGuard guard(x.device());
  return mmd_gaussian_assemble(x, y, gamma, unbiased, grad_x, grad_y, yy, &cross_cuda);
}

at::Tensor mmd_gaussian_self_cuda(const at::Tensor& y, const at::Tensor& gamma) {
  check_mmd_self_inputs(y, gamma);
  const c10::cuda::CUDAGuard guard(y.device());
  const auto t = mmd_self_prepare(y, gamma);  // centred and scaled as in the assembly
  return std::get<0>(cross_cuda(t, t, 1.0, false));
}

}  // namespace

TORCH_LIBRARY_IMPL(genint_fast, CUDA, m) {
  m.impl("mmd_gaussian", &mmd_gaussian_cuda);
  m.impl("mmd_gaussian_self", &mmd_gaussian_self_cuda);
}

}  // namespace genint_fast
