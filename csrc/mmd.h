// Shared pieces of the Gaussian-kernel MMD op: input validation (one clear RuntimeError per
// problem), the assembly of MMD^2 and its gradients from "cross" sums, and an ATen-only tiled
// cross term (any device). Included by the CPU and CUDA implementations.
//
// Notation. For two sets A (N, C) and B (M, C) and k(a, b) = exp(-gamma ||a - b||^2):
//   S(A, B)   = sum_ij k(a_i, b_j)
//   G(A, B)_i = sum_j k(a_i, b_j) (a_i - b_j) = rowsum_i a_i - (K B)_i      (N, C)
// so dS(A, B)/da_i = -2 gamma G(A, B)_i and dS(A, A)/da_i = -4 gamma G(A, A)_i.
// MMD^2 = cxx S'(X, X) + cyy S'(Y, Y) + cxy S(X, Y) with S' = S - N (unbiased: the diagonal, which
// is exactly 1, is left out) or S' = S (biased), cxx = 1/N^2 or 1/(N(N-1)), cxy = -2/(NM).
// No N x M matrix is ever formed: tiles of at most a few MB are.
// The bandwidth is a tensor, one value per pair (or one for all): since
// exp(-gamma ||a - b||^2) = exp(-||sqrt(gamma) a - sqrt(gamma) b||^2), the assembly scales each
// batch element's centred vectors by sqrt(gamma_b) and the cross terms run with gamma = 1, so a
// pair's result never depends on the other pairs of its batch.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <algorithm>
#include <cmath>
#include <tuple>

namespace genint_fast {

inline bool is_mmd_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// Compute dtype of the tiles and gradients: float64 for float64 inputs, else float32.
inline at::ScalarType mmd_acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_mmd_set(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 3, "mmd_gaussian: ", name, " must be 3-D (B, N, C), got ", t.dim(), "-D");
  TORCH_CHECK(is_mmd_float(t.scalar_type()), "mmd_gaussian: ", name,
              " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
  TORCH_CHECK(t.size(0) > 0, "mmd_gaussian: ", name, " has an empty batch (B = 0)");
  TORCH_CHECK(t.size(1) > 0, "mmd_gaussian: ", name,
              " is an empty set of feature vectors (N = 0); MMD needs at least one");
}

// gamma: 1-D, one value for all pairs or one per pair (`pairs` of them), floating, on x's device.
// Its values (finite, > 0) are checked on the CPU only: on CUDA that would copy them to the host
// and synchronise every call (genint_fast.ops.mmd checks Python numbers before they become
// tensors; its default bandwidth is positive by construction).
inline void check_mmd_gamma(const at::Tensor& gamma, int64_t pairs, const at::Tensor& x) {
  TORCH_CHECK(gamma.dim() == 1 && (gamma.size(0) == 1 || gamma.size(0) == pairs),
              "mmd_gaussian: gamma must have shape (1,) or (", pairs, ",) (one per pair), got ",
              gamma.sizes());
  TORCH_CHECK(at::isFloatingType(gamma.scalar_type()), "mmd_gaussian: gamma must be a floating "
              "tensor, got ", gamma.scalar_type());
  TORCH_CHECK(gamma.device() == x.device(), "mmd_gaussian: gamma is on ", gamma.device(),
              " but x is on ", x.device());
  if (gamma.is_cpu()) {
    const auto g = gamma.detach().to(at::kDouble);
    TORCH_CHECK(at::isfinite(g).all().item<bool>() && (g > 0).all().item<bool>(),
                "mmd_gaussian: gamma must be finite and > 0, got ", g);
  }
}

inline void check_mmd_gaussian_inputs(const at::Tensor& x, const at::Tensor& y,
                                      const at::Tensor& gamma, bool unbiased, bool grad_y,
                                      const std::optional<at::Tensor>& yy) {
  check_mmd_set(x, "x");
  check_mmd_set(y, "y");
  TORCH_CHECK(x.size(2) == y.size(2), "mmd_gaussian: x has C = ", x.size(2),
              " channels but y has C = ", y.size(2));
  TORCH_CHECK(y.size(0) == x.size(0) || y.size(0) == 1, "mmd_gaussian: y has batch ", y.size(0),
              " but x has batch ", x.size(0), " (y's batch must equal x's or be 1)");
  TORCH_CHECK(y.scalar_type() == x.scalar_type(), "mmd_gaussian: y has dtype ", y.scalar_type(),
              " but x has dtype ", x.scalar_type());
  TORCH_CHECK(y.device() == x.device(), "mmd_gaussian: y is on ", y.device(), " but x is on ",
              x.device());
  check_mmd_gamma(gamma, x.size(0), x);
  if (unbiased) {
    TORCH_CHECK(x.size(1) >= 2 && y.size(1) >= 2,
                "mmd_gaussian: the unbiased estimator needs at least 2 vectors per set, got N = ",
                x.size(1), ", M = ", y.size(1));
  }
  if (yy.has_value()) {
    TORCH_CHECK(!grad_y, "mmd_gaussian: a cached y-y term (yy) is for a constant y; it cannot be "
                         "combined with grad_y");
    // One cached sum per y batch element, or per pair when per-pair bandwidths made y's
    // scaled copies differ.
    TORCH_CHECK(yy->dim() == 1 && (yy->size(0) == y.size(0) || yy->size(0) == x.size(0)),
                "mmd_gaussian: yy must have shape (", y.size(0), ",) or (", x.size(0), ",), got ",
                yy->sizes());
    TORCH_CHECK(yy->scalar_type() == at::kDouble, "mmd_gaussian: yy must be float64, got ",
                yy->scalar_type());
    TORCH_CHECK(yy->device() == x.device(), "mmd_gaussian: yy is on ", yy->device(),
                " but x is on ", x.device());
  }
}

// Batched cross term. A: (Ba, N, C), B: (Bb, M, C) in the compute dtype, with Ba and Bb equal or
// one of them 1 (broadcast). Returns (sums (max(Ba, Bb),) float64, G (max(Ba, Bb), N, C) in the
// compute dtype, or an undefined tensor when want_grad is false).
using CrossFn = std::tuple<at::Tensor, at::Tensor> (*)(const at::Tensor& A, const at::Tensor& B,
                                                       double gamma, bool want_grad);

// The cross term from ATen ops on tiles of at most rows x cols (any device). Used by the CUDA
// path for widths beyond its fused kernel and by the C++ tests.
inline std::tuple<at::Tensor, at::Tensor> mmd_cross_composite(const at::Tensor& A,
                                                              const at::Tensor& B, double gamma,
                                                              bool want_grad,
                                                              int64_t rows = 2048,
                                                              int64_t cols = 4096) {
  const int64_t nb = std::max(A.size(0), B.size(0));
  const int64_t N = A.size(1), M = B.size(1), C = A.size(2);
  auto sums = at::zeros({nb}, A.options().dtype(at::kDouble));
  at::Tensor G = want_grad ? at::zeros({nb, N, C}, A.options()) : at::Tensor();
  auto na = A.square().sum(-1);  // (Ba, N)
  auto nbn = B.square().sum(-1);  // (Bb, M)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t ba = A.size(0) == 1 ? 0 : b, bb = B.size(0) == 1 ? 0 : b;
    auto Ab = A[ba], Bb = B[bb];
    at::Tensor total = at::zeros({}, A.options().dtype(at::kDouble));
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
      const int64_t r = std::min(rows, N - r0);
      auto Ar = Ab.narrow(0, r0, r);
      auto nar = na[ba].narrow(0, r0, r).unsqueeze(1);
      at::Tensor Gr, rs;
      if (want_grad) {
        Gr = G[b].narrow(0, r0, r);
        rs = at::zeros({r, 1}, A.options());
      }
      for (int64_t c0 = 0; c0 < M; c0 += cols) {
        const int64_t c = std::min(cols, M - c0);
        auto Bc = Bb.narrow(0, c0, c);
        // ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b, clamped at 0 against rounding.
        auto K = at::addmm(nbn[bb].narrow(0, c0, c).unsqueeze(0), Ar, Bc.t(), 1.0, -2.0);
        K.add_(nar).clamp_min_(0.0).mul_(-gamma).exp_();
        total.add_(K.sum(at::kDouble));
        if (want_grad) {
          rs.add_(K.sum(1, true));
          Gr.addmm_(K, Bc);
        }
      }
      if (want_grad) Gr.neg_().addcmul_(rs, Ar);
    }
    sums[b].copy_(total);
  }
  return {sums, G};
}

// The centre subtracted before forming |a|^2 + |b|^2 - 2 a.b: the mean of each batch element of
// a (B, N, C) set, shape (B, 1, C); every cross term pairs x[b] (or y[b]) with y[b] or y[0], and
// all of them are shifted by the same centre[b] or centre[0], under which the Gaussian MMD and
// its gradients do not change (exactly, in exact arithmetic); the mean keeps the norms small.
// Per batch element, so a non-finite value only affects its own batch element's loss.
inline at::Tensor mmd_centre(const at::Tensor& t) {
  return t.mean(1, /*keepdim=*/true);
}

// sqrt(gamma) as a (1 or B, 1, 1) tensor of the compute dtype, to scale the batch elements by.
inline at::Tensor mmd_scale(const at::Tensor& gamma, at::ScalarType acc) {
  return gamma.detach().to(acc).sqrt().view({-1, 1, 1});
}

// MMD^2 (per batch element) and, on request, its gradients with respect to x and y per unit of
// loss, assembled from cross terms. x: (B, N, C); y: (B or 1, M, C); yy: optional cached
// S(Y, Y) per y batch element (float64). Returns (loss (B,) in x's dtype, grad_x (B, N, C) or an
// empty tensor, grad_y (B, M, C) unreduced over the batch, or an empty tensor).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> mmd_gaussian_assemble(
    const at::Tensor& x_, const at::Tensor& y_, const at::Tensor& gamma, bool unbiased,
    bool grad_x, bool grad_y, const std::optional<at::Tensor>& yy, CrossFn cross) {
  const auto acc = mmd_acc_dtype(x_.scalar_type());
  // detach: the kernels may run ATen ops on worker threads, where the autograd dispatch key
  // that the op's caller already handled is not excluded.
  // Centred on the mean of y: ||a - b||^2 is shift-invariant, and |a|^2 + |b|^2 - 2 a.b of
  // centred vectors keeps the float32 digits that a large common offset would cancel away.
  // Then each batch element is scaled by sqrt(gamma_b) and the cross terms use gamma = 1; a y of
  // batch 1 under per-pair bandwidths becomes one scaled copy per pair.
  const auto centre = mmd_centre(y_.detach().to(acc));
  const auto scale = mmd_scale(gamma, acc);
  const auto x = ((x_.detach().to(acc) - centre) * scale).contiguous();
  const auto y = ((y_.detach().to(acc) - centre) * scale).contiguous();
  const int64_t B = x.size(0), N = x.size(1), M = y.size(1);
  const double n = static_cast<double>(N), m = static_cast<double>(M);
  const double cxx = unbiased ? 1.0 / (n * (n - 1.0)) : 1.0 / (n * n);
  const double cyy = unbiased ? 1.0 / (m * (m - 1.0)) : 1.0 / (m * m);
  const double cxy = -2.0 / (n * m);

  auto [sxy, gxy] = cross(x, y, 1.0, grad_x);
  auto [sxx, gxx] = cross(x, x, 1.0, grad_x);
  at::Tensor syy, gyy, gyx;
  if (yy.has_value()) {
    syy = *yy;
  } else {
    std::tie(syy, gyy) = cross(y, y, 1.0, grad_y);
  }
  if (grad_y) gyx = std::get<1>(cross(y, x, 1.0, true));  // (B, M, C)

  if (unbiased) {
    sxx = sxx - n;
    syy = syy - m;
  }
  auto loss = (cxx * sxx + cyy * syy.expand({B}) + cxy * sxy).to(x_.scalar_type());
  // Two distinct empty tensors: outputs of one op must not alias each other.
  at::Tensor gx = at::empty({0}, x_.options()), gy = at::empty({0}, y_.options());
  // d/dx of the scaled problem times sqrt(gamma) (the chain rule through the scaling).
  if (grad_x) {
    gx = gxx.mul(cxx * -4.0).add_(gxy, cxy * -2.0).mul_(scale).to(x_.scalar_type());
  }
  if (grad_y) {
    gy = gyx.mul(cxy * -2.0).add_(gyy.mul(cyy * -4.0).expand({B, M, y.size(2)})).mul_(scale)
             .to(y_.scalar_type());
  }
  return {loss, gx, gy};
}

// y of batch 1 may take one bandwidth per pair (one sum per value); otherwise gamma has one value
// or one per batch element of y.
inline void check_mmd_self_inputs(const at::Tensor& y, const at::Tensor& gamma) {
  check_mmd_set(y, "y");
  check_mmd_gamma(gamma, y.size(0) == 1 ? gamma.size(0) : y.size(0), y);
}

// The input of the self sum: y centred per batch element (the sum is shift-invariant) and scaled
// by sqrt(gamma), in the compute dtype; the cross term then runs with gamma = 1.
inline at::Tensor mmd_self_prepare(const at::Tensor& y, const at::Tensor& gamma) {
  const auto t = y.detach().to(mmd_acc_dtype(y.scalar_type()));
  return ((t - mmd_centre(t)) * mmd_scale(gamma, t.scalar_type())).contiguous();
}

}  // namespace genint_fast
