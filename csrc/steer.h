// Shared pieces of the steering op: input validation (one clear RuntimeError per problem) and the
// mode enum. Included by the CPU and CUDA implementations.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <string_view>

namespace genint_fast {

enum class SteerMode { Add, Set };

inline SteerMode parse_steer_mode(std::string_view mode) {
  if (mode == "add") return SteerMode::Add;
  if (mode == "set") return SteerMode::Set;
  TORCH_CHECK(false, "steer: mode must be \"add\" or \"set\", got \"", std::string(mode), "\"");
}

inline bool is_steer_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// Checks shapes, dtypes, devices and the index range of a steer call. grad (may be undefined) is
// checked too for the backward. Raises a RuntimeError naming the problem.
inline void check_steer_inputs(const at::Tensor& z, const at::Tensor& directions,
                               const at::Tensor& sigma, const at::Tensor& mu,
                               const at::Tensor& idx, const at::Tensor& alpha,
                               std::optional<double> clamp, const at::Tensor* grad = nullptr) {
  TORCH_CHECK(z.dim() == 2, "steer: z must be 2-D (B, D), got ", z.dim(), "-D");
  TORCH_CHECK(directions.dim() == 2, "steer: directions must be 2-D (K, D), got ",
              directions.dim(), "-D");
  TORCH_CHECK(sigma.dim() == 1, "steer: sigma must be 1-D (K,), got ", sigma.dim(), "-D");
  TORCH_CHECK(mu.dim() == 1, "steer: mu must be 1-D (D,), got ", mu.dim(), "-D");
  TORCH_CHECK(idx.dim() == 2, "steer: idx must be 2-D (B, M), got ", idx.dim(), "-D");
  TORCH_CHECK(alpha.dim() == 2, "steer: alpha must be 2-D (B, M), got ", alpha.dim(), "-D");
  const int64_t B = z.size(0), D = z.size(1), K = directions.size(0);
  TORCH_CHECK(directions.size(1) == D, "steer: directions have D = ", directions.size(1),
              " but z has D = ", D);
  TORCH_CHECK(mu.size(0) == D, "steer: mu has D = ", mu.size(0), " but z has D = ", D);
  TORCH_CHECK(sigma.size(0) == K, "steer: sigma has K = ", sigma.size(0),
              " but directions have K = ", K);
  TORCH_CHECK(idx.size(0) == B, "steer: idx has B = ", idx.size(0), " but z has B = ", B);
  TORCH_CHECK(alpha.sizes() == idx.sizes(), "steer: alpha has shape ", alpha.sizes(),
              " but idx has shape ", idx.sizes());
  TORCH_CHECK(is_steer_float(z.scalar_type()),
              "steer: z must be float32, float64, float16 or bfloat16, got ", z.scalar_type());
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"directions", directions},
                                {"sigma", sigma}, {"mu", mu}, {"alpha", alpha}}) {
    TORCH_CHECK(t.scalar_type() == z.scalar_type(), "steer: ", name, " has dtype ",
                t.scalar_type(), " but z has dtype ", z.scalar_type(),
                " (all floating inputs must share one dtype)");
    TORCH_CHECK(t.device() == z.device(), "steer: ", name, " is on ", t.device(),
                " but z is on ", z.device());
  }
  TORCH_CHECK(idx.scalar_type() == at::kLong, "steer: idx must be int64, got ", idx.scalar_type());
  TORCH_CHECK(idx.device() == z.device(), "steer: idx is on ", idx.device(), " but z is on ",
              z.device());
  if (clamp.has_value()) {
    TORCH_CHECK(*clamp >= 0.0, "steer: clamp must be >= 0, got ", *clamp);
  }
  if (grad != nullptr) {
    TORCH_CHECK(grad->sizes() == z.sizes(), "steer_backward: grad has shape ", grad->sizes(),
                " but z has shape ", z.sizes());
    TORCH_CHECK(grad->device() == z.device(), "steer_backward: grad is on ", grad->device(),
                " but z is on ", z.device());
    TORCH_CHECK(grad->scalar_type() == z.scalar_type(), "steer_backward: grad has dtype ",
                grad->scalar_type(), " but z has dtype ", z.scalar_type());
  }
  if (idx.numel() > 0) {
    TORCH_CHECK(K > 0, "steer: directions are empty (K = 0) but idx asks for ", idx.size(1),
                " directions per row");
  }
  if (idx.numel() > 0 && !idx.is_cuda()) {
    // On the CPU one pass over the (B, M) indices. On CUDA a host-side check would copy to the
    // host and synchronise every call (and break CUDA-graph capture), so the kernels check each
    // index on the device instead, as ATen's indexing does (a device-side assert).
    auto [lo, hi] = at::aminmax(idx);
    const int64_t lo_v = lo.item<int64_t>(), hi_v = hi.item<int64_t>();
    TORCH_CHECK(lo_v >= 0 && hi_v < K, "steer: idx must lie in [0, K = ", K, "), found values in [",
                lo_v, ", ", hi_v, "]");
  }
}

// Accumulation dtype of the outputs that carry reductions (float32; float64 for float64 inputs).
inline at::ScalarType steer_acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace genint_fast

namespace genint_fast {

// The steering op composed from ATen ops (any device, accumulation in float32/float64). It is the
// C++ reference of the C++ tests and the CUDA path for D > 1024, where a row no longer fits the
// fused kernel's registers. Inputs must already be checked.
at::Tensor steer_composite(const at::Tensor& z, const at::Tensor& directions,
                           const at::Tensor& sigma, const at::Tensor& mu, const at::Tensor& idx,
                           const at::Tensor& alpha, SteerMode mode, std::optional<double> clamp);

std::tuple<at::Tensor, at::Tensor> steer_backward_composite(
    const at::Tensor& grad, const at::Tensor& z, const at::Tensor& directions,
    const at::Tensor& sigma, const at::Tensor& mu, const at::Tensor& idx, const at::Tensor& alpha,
    SteerMode mode, std::optional<double> clamp);

}  // namespace genint_fast
