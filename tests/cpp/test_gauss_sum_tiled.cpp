// The register-tiled Gaussian sum kernel (csrc/cuda/gauss_sum_tiled.cuh) run on the host by the
// CUDA emulator (csrc/cuda/emulate_cuda.h): every block's total against a direct float64 sum,
// over shapes that leave partial tiles in every direction, channel counts that are not multiples
// of the chunk, a broadcast batch, the self term (A is B) and a NaN. This checks the kernel's
// indexing, masking and reduction where no GPU is available (built with AddressSanitizer, so a
// read outside the inputs fails too; a missing barrier shows as wrong totals, since the block's
// threads are real threads); the CUDA tests check it on a GPU. No torch: plain C++.
#define GENINT_FAST_EMULATE_CUDA 1
#include "cuda/gauss_sum_tiled.cuh"
#include "expect.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

namespace {


using genint_fast::tiled::gauss_sum_tiled_kernel;

struct Case {
  int batch, N, M, C;
  bool broadcast_b, self;
};

// Direct sum of exp(-gamma max(|a|^2 + |b|^2 - 2 a.b, 0)) in float64.
double direct(const float* A, const float* B, int N, int M, int C, double gamma) {
  double total = 0;
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < M; ++j) {
      double na = 0, nb = 0, dot = 0;
      for (int c = 0; c < C; ++c) {
        na += double(A[i * C + c]) * A[i * C + c];
        nb += double(B[j * C + c]) * B[j * C + c];
        dot += double(A[i * C + c]) * B[j * C + c];
      }
      total += std::exp(-gamma * std::max(na + nb - 2 * dot, 0.0));
    }
  return total;
}

std::vector<float> norms(const std::vector<float>& t, int rows, int C) {
  std::vector<float> n(rows);
  for (int i = 0; i < rows; ++i) {
    float s = 0;
    for (int c = 0; c < C; ++c) s += t[i * C + c] * t[i * C + c];
    n[i] = s;
  }
  return n;
}

// Runs the kernel; returns the per-batch totals (summed over blocks in order).
std::vector<double> run(const std::vector<float>& A, const std::vector<float>& B, const Case& k,
                        float gamma, int* unwritten) {
  const int nbB = k.broadcast_b ? 1 : k.batch;
  std::vector<float> na = norms(A, k.batch * k.N, k.C), nb = norms(B, nbB * k.M, k.C);
  EmuDim3 grid{static_cast<unsigned>((k.N + 63) / 64), static_cast<unsigned>((k.M + 63) / 64),
               static_cast<unsigned>(k.batch)};
  const int tiles = static_cast<int>(grid.x * grid.y);
  std::vector<double> partial(k.batch * tiles, std::numeric_limits<double>::quiet_NaN());
  genint_fast::emu::launch(grid, EmuDim3{256, 1, 1}, gauss_sum_tiled_kernel, A.data(),
                           int64_t(k.N) * k.C, na.data(), int64_t(k.N), B.data(),
                           k.broadcast_b ? int64_t(0) : int64_t(k.M) * k.C, nb.data(),
                           k.broadcast_b ? int64_t(0) : int64_t(k.M), k.N, k.M, k.C, gamma,
                           partial.data());
  std::vector<double> totals(k.batch, 0.0);
  *unwritten = 0;
  for (int b = 0; b < k.batch; ++b)
    for (int t = 0; t < tiles; ++t) {
      const double v = partial[b * tiles + t];
      if (std::isnan(v)) ++*unwritten;
      totals[b] += v;
    }
  return totals;
}

}  // namespace

int main() {
  std::mt19937 rng(0);
  std::normal_distribution<float> normal(0.f, 1.f);
  const Case cases[] = {
      {1, 1, 1, 1, false, false},    {1, 5, 70, 3, false, false},  {1, 64, 64, 32, false, false},
      {2, 65, 130, 33, true, false}, {1, 100, 37, 100, false, false},
      {2, 70, 70, 64, false, true},
  };
  for (const Case& k : cases) {
    const float gamma = 0.5f / static_cast<float>(k.C);
    std::vector<float> A(size_t(k.batch) * k.N * k.C);
    for (float& v : A) v = normal(rng);
    const int nbB = k.broadcast_b ? 1 : k.batch;
    std::vector<float> B;
    if (k.self) {
      B = A;
    } else {
      B.resize(size_t(nbB) * k.M * k.C);
      for (float& v : B) v = normal(rng) + 0.3f;
    }
    int unwritten = 0;
    const auto got = run(A, B, k, gamma, &unwritten);
    EXPECT(unwritten == 0);
    for (int b = 0; b < k.batch; ++b) {
      const float* Ab = A.data() + size_t(b) * k.N * k.C;
      const float* Bb = B.data() + (k.broadcast_b ? 0 : size_t(b) * k.M * k.C);
      const double want = direct(Ab, Bb, k.N, k.M, k.C, gamma);
      const bool ok = std::abs(got[b] - want) <= 1e-5 * std::abs(want) + 1e-6;
      if (!ok)
        std::fprintf(stderr, "case N=%d M=%d C=%d batch %d: got %.9g, want %.9g\n", k.N, k.M,
                     k.C, b, got[b], want);
      EXPECT(ok);
    }
  }
  {  // A NaN reaches its batch element's total only.
    Case k{2, 10, 9, 4, false, false};
    std::vector<float> A(2 * 10 * 4, 0.5f), B(2 * 9 * 4, -0.25f);
    A[3] = std::numeric_limits<float>::quiet_NaN();  // batch 0
    int unwritten = 0;
    const auto got = run(A, B, k, 0.1f, &unwritten);
    EXPECT(std::isnan(got[0]));
    EXPECT(std::isfinite(got[1]));
  }
  std::printf("test_gauss_sum_tiled: %d failure(s)\n", failures());
  return failures();
}
