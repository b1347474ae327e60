// The Gaussian MMD cross-term CUDA kernel (csrc/cuda/mmd_kernels.cuh) run on the host by the CUDA
// emulator (csrc/cuda/emulate_cuda.h), in CI where no GPU is: per batch element the sum
// S = sum_ij exp(-gamma max(|a_i|^2 + |b_j|^2 - 2 a_i.b_j, 0)) and the gradient term
// G_i = sum_j k_ij (a_i - b_j) against a direct float64 computation, for every width tier (CPT),
// partial tiles of rows, a broadcast batch and the self term (A is B). Built with
// AddressSanitizer, so a read outside the inputs fails too. The CUDA tests check it on a GPU.
#define GENINT_FAST_EMULATE_CUDA 1
#include "cuda/mmd_kernels.cuh"
#include "expect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {


namespace mk = genint_fast::mmd_kernels;
namespace emu = genint_fast::emu;

struct Case {
  int batch, N, M, C;
  bool broadcast_b, self;
};

template <int CPT>
void check_case(const Case& k, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01(0.f, 1.f);
  const int nbB = k.broadcast_b ? 1 : k.batch;
  std::vector<float> A(size_t(k.batch) * k.N * k.C);
  for (float& v : A) v = 0.5f * n01(rng);
  std::vector<float> B;
  if (k.self) {
    B = A;
  } else {
    B.resize(size_t(nbB) * k.M * k.C);
    for (float& v : B) v = 0.5f * n01(rng) + 0.1f;
  }
  const int M = k.self ? k.N : k.M;
  const float gamma = 1.0f / static_cast<float>(k.C);
  const unsigned blocks = static_cast<unsigned>((k.N + mk::kTile - 1) / mk::kTile);
  std::vector<double> partial(size_t(k.batch) * blocks, NAN);
  std::vector<float> G(size_t(k.batch) * k.N * k.C, NAN);
  emu::launch(EmuDim3{blocks, static_cast<unsigned>(k.batch), 1}, EmuDim3{mk::kThreads, 1, 1},
              mk::mmd_cross_kernel<CPT>, A.data(), int64_t(k.N) * k.C, B.data(),
              k.broadcast_b ? int64_t(0) : int64_t(M) * k.C, k.N, M, k.C, gamma, partial.data(),
              G.data());
  for (int b = 0; b < k.batch; ++b) {
    const float* Ab = A.data() + size_t(b) * k.N * k.C;
    const float* Bb = B.data() + (k.broadcast_b ? 0 : size_t(b) * M * k.C);
    double S = 0, err_g = 0, scale_g = 0;
    for (int i = 0; i < k.N; ++i) {
      std::vector<double> g(k.C, 0.0);
      for (int j = 0; j < M; ++j) {
        double d2 = 0;
        for (int c = 0; c < k.C; ++c) {
          const double diff = double(Ab[i * k.C + c]) - Bb[j * k.C + c];
          d2 += diff * diff;
        }
        const double kv = std::exp(-double(gamma) * d2);
        S += kv;
        for (int c = 0; c < k.C; ++c) g[c] += kv * (double(Ab[i * k.C + c]) - Bb[j * k.C + c]);
      }
      for (int c = 0; c < k.C; ++c) {
        err_g = std::max(err_g, std::abs(G[(size_t(b) * k.N + i) * k.C + c] - g[c]));
        scale_g = std::max(scale_g, std::abs(g[c]));
      }
    }
    double got = 0;
    for (unsigned t = 0; t < blocks; ++t) got += partial[size_t(b) * blocks + t];
    const bool ok = std::abs(got - S) <= 1e-5 * S && err_g <= 1e-4 * std::max(1.0, scale_g);
    if (!ok)
      std::fprintf(stderr, "N=%d M=%d C=%d CPT=%d batch %d: sum %.9g vs %.9g, G error %.3g\n",
                   k.N, M, k.C, CPT, b, got, S, err_g);
    EXPECT(ok);
  }
}

}  // namespace

int main() {
  check_case<8>({1, 1, 1, 3, false, false}, 1);
  check_case<8>({2, 70, 45, 64, true, false}, 2);     // broadcast B, partial row tiles
  check_case<16>({1, 33, 65, 100, false, false}, 3);
  check_case<32>({2, 40, 20, 200, false, false}, 4);
  check_case<64>({1, 10, 33, 512, false, false}, 5);  // the widest tier
  check_case<8>({1, 50, 0, 16, false, true}, 6);      // the self term, A is B
  std::printf("test_mmd_kernels_emulated: %d failure(s)\n", failures());
  return failures();
}
