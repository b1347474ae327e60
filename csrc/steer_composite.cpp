// The steering op as a composition of ATen ops: see steer.h.
#include <ATen/ATen.h>

#include "steer.h"

namespace genint_fast {
namespace {

at::Tensor pre_clamp(const at::Tensor& z, const at::Tensor& U, const at::Tensor& sigma,
                     const at::Tensor& mu, const at::Tensor& idx, const at::Tensor& alpha,
                     SteerMode mode) {
  const auto acc = steer_acc_dtype(z.scalar_type());
  const int64_t B = z.size(0), D = z.size(1), M = idx.size(1);
  auto zf = z.to(acc), Uf = U.to(acc), sf = sigma.to(acc), muf = mu.to(acc), af = alpha.to(acc);
  if (mode == SteerMode::Add) {
    auto out = zf - muf;
    if (M == 0 || B == 0) return out;
    auto coef = sf.index_select(0, idx.reshape(-1)).view({B, M}) * af;         // (B, M)
    auto u = Uf.index_select(0, idx.reshape(-1)).view({B, M, D});              // (B, M, D)
    return out + (coef.unsqueeze(-1) * u).sum(1);
  }
  auto out = zf.clone();
  for (int64_t m = 0; m < M; ++m) {
    auto u = Uf.index_select(0, idx.select(1, m));                             // (B, D)
    auto p = ((out - muf) * u).sum(-1, /*keepdim=*/true);
    out = out + (af.select(1, m).unsqueeze(-1) - p) * u;
  }
  return out;
}

}  // namespace

at::Tensor steer_composite(const at::Tensor& z, const at::Tensor& U, const at::Tensor& sigma,
                           const at::Tensor& mu, const at::Tensor& idx, const at::Tensor& alpha,
                           SteerMode mode, std::optional<double> clamp) {
  auto out = pre_clamp(z, U, sigma, mu, idx, alpha, mode);
  if (clamp.has_value()) out = out.clamp(-*clamp, *clamp);
  return out.to(z.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> steer_backward_composite(
    const at::Tensor& grad, const at::Tensor& z, const at::Tensor& U, const at::Tensor& sigma,
    const at::Tensor& mu, const at::Tensor& idx, const at::Tensor& alpha, SteerMode mode,
    std::optional<double> clamp) {
  const auto acc = steer_acc_dtype(z.scalar_type());
  const int64_t B = z.size(0), D = z.size(1), M = idx.size(1);
  auto gm = grad.to(acc);
  if (clamp.has_value()) {
    auto pre = pre_clamp(z, U, sigma, mu, idx, alpha, mode);
    gm = gm * at::logical_and(pre >= -*clamp, pre <= *clamp).to(acc);
  }
  auto Uf = U.to(acc);
  auto dots = at::zeros({B, M}, z.options().dtype(acc));
  if (B == 0 || M == 0) return {gm.to(z.scalar_type()), dots};
  if (mode == SteerMode::Add) {
    auto u = Uf.index_select(0, idx.reshape(-1)).view({B, M, D});
    dots = at::bmm(u, gm.unsqueeze(-1)).squeeze(-1);
  } else {
    gm = gm.clone();
    for (int64_t m = M - 1; m >= 0; --m) {
      auto u = Uf.index_select(0, idx.select(1, m));
      auto s = (gm * u).sum(-1);
      dots.select(1, m).copy_(s);
      gm.sub_(s.unsqueeze(-1) * u);
    }
  }
  return {gm.to(z.scalar_type()), dots};
}

}  // namespace genint_fast
