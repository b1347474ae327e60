// The steering op's CUDA kernels (csrc/cuda/steer_kernels.cuh) run on the host by the CUDA
// emulator (csrc/cuda/emulate_cuda.h, warp shuffles included), in CI where no GPU is: the forward
// against a direct float64 implementation, the backward (grad_z and the per-step dot products)
// against exact differences of that implementation, for every register tier and both vector
// widths, M <= 32 (steps broadcast by shuffles) and M > 32 (read directly), both modes, with and
// without clamp; and an index out of range: a failed device-side assert, no read outside the
// directions (AddressSanitizer). The CUDA tests check the same kernels on a GPU.
#define GENINT_FAST_EMULATE_CUDA 1
#include "cuda/steer_kernels.cuh"
#include "expect.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

namespace {


namespace sk = genint_fast::steer_kernels;
namespace emu = genint_fast::emu;

// 64-byte aligned buffer (the vector path reads Vec<double, 4>, 32-byte aligned).
struct Buf {
  std::unique_ptr<double, decltype(&std::free)> p{nullptr, &std::free};
  size_t n = 0;
  explicit Buf(size_t n_) : n(n_) {
    const size_t bytes = ((n_ * sizeof(double) + 63) / 64) * 64 + 64;
    p.reset(static_cast<double*>(std::aligned_alloc(64, bytes)));
  }
  double* data() const { return p.get(); }
  double& operator[](size_t i) { return p.get()[i]; }
};

struct Problem {
  int B, D, K, M;
  std::vector<double> z, U, sigma, mu, alpha;
  std::vector<int64_t> idx;
};

Problem make(int B, int D, int K, int M, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> n01(0.0, 1.0);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  Problem p{B, D, K, M, {}, {}, {}, {}, {}, {}};
  p.z.resize(size_t(B) * D);
  for (auto& v : p.z) v = n01(rng);
  p.U.resize(size_t(K) * D);
  for (int k = 0; k < K; ++k) {
    double norm = 0;
    for (int d = 0; d < D; ++d) norm += (p.U[k * D + d] = n01(rng)) * p.U[k * D + d];
    for (int d = 0; d < D; ++d) p.U[k * D + d] /= std::sqrt(norm);
  }
  p.sigma.resize(K);
  for (auto& v : p.sigma) v = 0.5 + u01(rng);
  p.mu.resize(D);
  for (auto& v : p.mu) v = 0.1 * n01(rng);
  p.alpha.resize(size_t(B) * M);
  for (auto& v : p.alpha) v = 2 * u01(rng) - 1;
  p.idx.resize(size_t(B) * M);
  for (auto& v : p.idx) v = static_cast<int64_t>(rng() % K);
  return p;
}

// Direct float64 steer of row b (the op's definition).
std::vector<double> direct_row(const Problem& p, const double* z, const double* alpha, int b,
                               bool add, double clamp) {
  const int D = p.D;
  std::vector<double> v(z + size_t(b) * D, z + size_t(b + 1) * D);
  if (add) {
    for (int d = 0; d < D; ++d) v[d] -= p.mu[d];
  }
  for (int m = 0; m < p.M; ++m) {
    const int64_t k = p.idx[size_t(b) * p.M + m];
    const double* u = p.U.data() + k * D;
    double coef;
    if (add) {
      coef = p.sigma[k] * alpha[size_t(b) * p.M + m];
    } else {
      double dot = 0;
      for (int d = 0; d < D; ++d) dot += (v[d] - p.mu[d]) * u[d];
      coef = alpha[size_t(b) * p.M + m] - dot;
    }
    for (int d = 0; d < D; ++d) v[d] += coef * u[d];
  }
  if (clamp > 0)
    for (auto& x : v) x = std::max(-clamp, std::min(clamp, x));
  return v;
}

template <int PL, int VEC>
void check_case(int B, int D, int M, unsigned seed) {
  const int K = 50;
  Problem p = make(B, D, K, M, seed);
  std::mt19937 rng(seed + 7);
  std::normal_distribution<double> n01(0.0, 1.0);
  Buf z(p.z.size()), U(p.U.size()), mu(p.mu.size()), out(p.z.size()), grad(p.z.size()),
      gz(p.z.size()), dots(size_t(B) * M);
  for (size_t i = 0; i < p.z.size(); ++i) z[i] = p.z[i];
  for (size_t i = 0; i < p.U.size(); ++i) U[i] = p.U[i];
  for (size_t i = 0; i < p.mu.size(); ++i) mu[i] = p.mu[i];
  for (size_t i = 0; i < p.z.size(); ++i) grad[i] = n01(rng);
  for (int add = 0; add < 2; ++add) {
    for (double clamp : {0.0, 0.8}) {
      const bool has_clamp = clamp > 0;
      for (size_t i = 0; i < out.n; ++i) out[i] = gz[i] = NAN;
      for (size_t i = 0; i < dots.n; ++i) dots[i] = NAN;
      constexpr int R = sk::fwd_rows_per_warp<PL>();
      const unsigned fwd_blocks = static_cast<unsigned>((B + 8 * R - 1) / (8 * R));
      emu::launch(EmuDim3{fwd_blocks, 1, 1}, EmuDim3{256, 1, 1},
                  sk::steer_fwd_kernel<double, double, PL, VEC>, z.data(), U.data(),
                  p.sigma.data(), mu.data(), p.idx.data(), p.alpha.data(), out.data(),
                  int64_t(B), int64_t(K), D, M, add == 1, has_clamp, clamp);
      emu::launch(EmuDim3{static_cast<unsigned>((B + 7) / 8), 1, 1}, EmuDim3{256, 1, 1},
                  sk::steer_bwd_kernel<double, double, PL, VEC>, grad.data(), z.data(),
                  U.data(), p.sigma.data(), mu.data(), p.idx.data(), p.alpha.data(), gz.data(),
                  dots.data(), int64_t(B), int64_t(K), D, M, add == 1, has_clamp, clamp);
      // Gradients: the steered row is affine in (z, alpha) and clamp only masks it, so with the
      // mask of the base point, L = sum_d grad_d mask_d pre_d is affine and a difference with
      // step 1 is its exact derivative (up to float64 rounding).
      double err_out = 0, err_gz = 0, err_dot = 0;
      for (int b = 0; b < B; ++b) {
        const auto want = direct_row(p, p.z.data(), p.alpha.data(), b, add == 1, clamp);
        for (int d = 0; d < D; ++d)
          err_out = std::max(err_out, std::abs(out[size_t(b) * D + d] - want[d]));
        const auto pre0 = direct_row(p, p.z.data(), p.alpha.data(), b, add == 1, 0.0);
        std::vector<double> w(D);
        for (int d = 0; d < D; ++d)
          w[d] = grad[size_t(b) * D + d] * (has_clamp && std::abs(pre0[d]) > clamp ? 0.0 : 1.0);
        auto loss = [&](const std::vector<double>& zz, const std::vector<double>& aa) {
          const auto v = direct_row(p, zz.data(), aa.data(), b, add == 1, 0.0);
          double s = 0;
          for (int d = 0; d < D; ++d) s += w[d] * v[d];
          return s;
        };
        const double l0 = loss(p.z, p.alpha);
        for (int d = 0; d < D; d += std::max(1, D / 7)) {  // a sample of coordinates
          auto zp = p.z;
          zp[size_t(b) * D + d] += 1.0;
          err_gz = std::max(err_gz, std::abs(gz[size_t(b) * D + d] - (loss(zp, p.alpha) - l0)));
        }
        for (int m = 0; m < M; ++m) {
          auto ap = p.alpha;
          ap[size_t(b) * M + m] += 1.0;
          double fd = loss(p.z, ap) - l0;
          if (add == 1) fd /= p.sigma[p.idx[size_t(b) * M + m]];
          err_dot = std::max(err_dot, std::abs(dots[size_t(b) * M + m] - fd));
        }
      }
      const bool ok = err_out < 1e-12 && err_gz < 1e-10 && err_dot < 1e-10;
      if (!ok)
        std::fprintf(stderr, "B=%d D=%d M=%d PL=%d VEC=%d %s clamp=%g: out %.3g, grad_z %.3g, "
                     "dots %.3g\n", B, D, M, PL, VEC, add ? "add" : "set", clamp, err_out, err_gz,
                     err_dot);
      EXPECT(ok);
      EXPECT(emu::failed_asserts() == 0);
    }
  }
}

}  // namespace

int main() {
  // B = 17 rows: two rows per warp leave the last warp with one row.
  check_case<1, 1>(17, 1, 4, 1);
  check_case<2, 1>(17, 33, 4, 2);
  check_case<4, 4>(17, 128, 4, 3);
  check_case<4, 1>(9, 128, 3, 4);     // the scalar path at the same width
  check_case<4, 4>(3, 128, 34, 5);    // M > 32: steps read directly
  check_case<8, 1>(9, 130, 3, 6);     // D not a multiple of 4
  check_case<32, 4>(3, 700, 2, 7);    // the widest register tier
  {  // An index out of range: a failed device assert, the step skipped, nothing read outside U.
    Problem p = make(4, 16, 6, 3, 8);
    p.idx[4] = 6;  // row 1
    std::vector<double> out(p.z.size(), NAN);
    emu::launch(EmuDim3{1, 1, 1}, EmuDim3{256, 1, 1}, sk::steer_fwd_kernel<double, double, 1, 1>,
                p.z.data(), p.U.data(), p.sigma.data(), p.mu.data(), p.idx.data(),
                p.alpha.data(), out.data(), int64_t(4), int64_t(6), 16, 3, true, false, 0.0);
    EXPECT(emu::failed_asserts() > 0);
  }
  std::printf("test_steer_kernels_emulated: %d failure(s)\n", failures());
  return failures();
}
