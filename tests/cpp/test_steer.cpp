// C++ tests of the steering op through the dispatcher (as any C++ user of the library calls it),
// against the ATen composition in steer_composite.cpp.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdio>
#include <optional>

#include "check.h"
#include "steer.h"

using genint_fast::SteerMode;

namespace {

at::Tensor call_steer(const at::Tensor& z, const at::Tensor& U, const at::Tensor& s,
                      const at::Tensor& mu, const at::Tensor& idx, const at::Tensor& a,
                      const char* mode, std::optional<double> clamp) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("genint_fast::steer", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         c10::string_view, std::optional<double>)>();
  return op.call(z, U, s, mu, idx, a, mode, clamp);
}

std::tuple<at::Tensor, at::Tensor> call_backward(const at::Tensor& g, const at::Tensor& z,
                                                 const at::Tensor& U, const at::Tensor& s,
                                                 const at::Tensor& mu, const at::Tensor& idx,
                                                 const at::Tensor& a, const char* mode,
                                                 std::optional<double> clamp) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("genint_fast::steer_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
              const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view,
              std::optional<double>)>();
  return op.call(g, z, U, s, mu, idx, a, mode, clamp);
}

void test_matches_composite(int64_t B, int64_t D, int64_t K, int64_t M, at::ScalarType dtype) {
  at::manual_seed(B * 1000 + D);
  auto opt = at::TensorOptions().dtype(dtype);
  auto z = at::randn({B, D}, opt);
  auto U = at::randn({K, D}, opt);
  U = U / U.norm(2, {1}, true);
  auto s = at::rand({K}, opt) + 0.5;
  auto mu = 0.1 * at::randn({D}, opt);
  auto idx = at::randint(0, K, {B, M}, at::TensorOptions().dtype(at::kLong));
  auto a = at::rand({B, M}, opt) * 2 - 1;
  auto g = at::randn({B, D}, opt);
  const double tol = dtype == at::kDouble ? 1e-10 : 1e-4;
  for (const char* mode : {"add", "set"}) {
    const SteerMode m = genint_fast::parse_steer_mode(mode);
    for (std::optional<double> clamp : {std::optional<double>(), std::optional<double>(0.7)}) {
      auto out = call_steer(z, U, s, mu, idx, a, mode, clamp);
      auto ref = genint_fast::steer_composite(z, U, s, mu, idx, a, m, clamp);
      EXPECT(out.sizes() == z.sizes() && out.scalar_type() == dtype);
      EXPECT(at::allclose(out, ref, tol, tol));
      auto [gz, dots] = call_backward(g, z, U, s, mu, idx, a, mode, clamp);
      auto [rgz, rdots] =
          genint_fast::steer_backward_composite(g, z, U, s, mu, idx, a, m, clamp);
      EXPECT(at::allclose(gz, rgz, tol, tol));
      EXPECT(at::allclose(dots, rdots, tol, tol));
    }
  }
}

void test_bad_inputs() {
  auto z = at::randn({4, 8});
  auto U = at::randn({6, 8});
  auto s = at::rand({6});
  auto mu = at::zeros({8});
  auto idx = at::randint(0, 6, {4, 3}, at::TensorOptions().dtype(at::kLong));
  auto a = at::rand({4, 3});
  EXPECT(throws_with([&] { call_steer(z[0], U, s, mu, idx, a, "add", {}); }, "z must be 2-D"));
  EXPECT(throws_with([&] { call_steer(z, U.narrow(1, 0, 7), s, mu, idx, a, "add", {}); },
                    "directions have D"));
  auto bad_idx = idx.clone();
  bad_idx[2][1] = 6;
  EXPECT(throws_with([&] { call_steer(z, U, s, mu, bad_idx, a, "add", {}); }, "idx must lie in"));
  bad_idx[2][1] = -3;
  EXPECT(throws_with([&] { call_steer(z, U, s, mu, bad_idx, a, "set", {}); }, "idx must lie in"));
  EXPECT(throws_with([&] { call_steer(z, U.to(at::kDouble), s, mu, idx, a, "add", {}); },
                    "directions has dtype"));
  EXPECT(throws_with([&] { call_steer(z, U, s, mu, idx, a, "mul", {}); }, "mode must be"));
}

}  // namespace

int main() {
  test_matches_composite(1, 1, 1, 1, at::kFloat);
  test_matches_composite(33, 130, 12, 5, at::kFloat);
  test_matches_composite(17, 1024, 60, 5, at::kDouble);
  test_matches_composite(0, 16, 4, 2, at::kFloat);
  test_bad_inputs();
  std::printf("test_steer: %d failure(s)\n", failures());
  return failures() == 0 ? 0 : 1;
}
