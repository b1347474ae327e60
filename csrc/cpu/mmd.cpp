// CPU kernels of the Gaussian-kernel MMD (see mmd.h for the notation).
//
// The cross term S(A, B) and its gradient G(A, B) are computed tile by tile: tasks are
// (batch element, block of kRows rows of A) split across threads with at::parallel_for; each
// task walks B in chunks of kCols rows. Per tile: one small GEMM (at::mm_out, single-threaded
// inside the parallel region) gives the dot products, one vectorised pass turns them into kernel
// values exp(-gamma (|a|^2 + |b|^2 - 2 a.b)) and row sums, and for the gradient one more small
// GEMM accumulates K @ B into the task's own rows of G. A tile is kRows x kCols floats (256 KiB),
// so it stays in L2 and no N x M matrix is formed. Half and bfloat16 inputs compute in float32,
// float64 in float64; row sums and the total are accumulated in float64 per tile.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "mmd.h"

namespace genint_fast {
namespace {

constexpr int64_t kRows = 128;
constexpr int64_t kCols = 512;

// exp(x) in place for x <= 0 (Cephes-style: x = n ln2 + g, |g| <= ln2/2, degree-6 polynomial,
// 2^n through the exponent bits; about 2 ulp). Written as a plain loop that GCC vectorises; the
// clones pick AVX-512 / AVX2 at run time. NaN stays NaN; x < -87.3 gives 0.
__attribute__((target_clones("avx512f", "avx2", "default"))) void exp_nonpos_inplace(float* p,
                                                                                     int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float x = p[i];
    const float xc = x < -87.0f ? -87.0f : x;
    // Round to nearest through the 1.5 * 2^23 trick (valid for |t| < 2^22).
    const float t = xc * 1.44269504088896341f;
    const float r = (t + 12582912.0f) - 12582912.0f;
    const float g = (xc - r * 0.693359375f) + r * 2.12194440e-4f;
    float q = 1.9875691500e-4f;
    q = q * g + 1.3981999507e-3f;
    q = q * g + 8.3334519073e-3f;
    q = q * g + 4.1665795894e-2f;
    q = q * g + 1.6666665459e-1f;
    q = q * g + 5.0000001201e-1f;
    const float e = q * g * g + g + 1.0f;
    const int32_t bits = (static_cast<int32_t>(r) + 127) << 23;
    const float scale = __builtin_bit_cast(float, bits);
    const float v = e * scale;
    p[i] = x < -87.0f ? 0.0f : (x == x ? v : x);
  }
}

void exp_nonpos_inplace(double* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = std::exp(p[i]);
}

// tile[i, j] <- -gamma * max(na[i] + nb[j] - 2 tile[i, j], 0)
template <typename T>
void to_exponent(T* tile, const T* na, const T* nb, int64_t r, int64_t c, T gamma) {
  for (int64_t i = 0; i < r; ++i) {
    T* row = tile + i * c;
    const T a = na[i];
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      T d = a + nb[j] - T(2) * row[j];
      d = d < T(0) ? T(0) : d;
      row[j] = d != d ? d : -gamma * d;  // keep NaN
    }
  }
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> cross_cpu_impl(const at::Tensor& A, const at::Tensor& B,
                                                  double gamma_d, bool want_grad) {
  const int64_t nb = std::max(A.size(0), B.size(0));
  const int64_t N = A.size(1), M = B.size(1), C = A.size(2);
  const T gamma = static_cast<T>(gamma_d);
  const auto na_all = A.square().sum(-1).contiguous();  // (Ba, N)
  const auto nb_all = B.square().sum(-1).contiguous();  // (Bb, M)
  at::Tensor G = want_grad ? at::empty({nb, N, C}, A.options()) : at::Tensor();
  const int64_t blocks = (N + kRows - 1) / kRows;
  std::vector<double> partial(static_cast<size_t>(nb * blocks), 0.0);
  const int64_t tasks = nb * blocks;
  // Grain: enough tasks per thread when the work per task is small.
  const int64_t grain = std::max<int64_t>(1, (1 << 22) / std::max<int64_t>(1, kRows * M * C));
  at::parallel_for(0, tasks, grain, [&](int64_t t0, int64_t t1) {
    at::Tensor buf = at::empty({kRows * std::min(kCols, M)}, A.options());
    std::vector<double> rs(kRows);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / blocks, blk = t % blocks;
      const int64_t ba = A.size(0) == 1 ? 0 : b, bb = B.size(0) == 1 ? 0 : b;
      const int64_t r0 = blk * kRows, r = std::min(kRows, N - r0);
      const auto Ar = A[ba].narrow(0, r0, r);
      const auto Bb = B[bb];
      const T* na = na_all.data_ptr<T>() + ba * N + r0;
      const T* nbp = nb_all.data_ptr<T>() + bb * M;
      at::Tensor Gr;
      if (want_grad) {
        Gr = G[b].narrow(0, r0, r);
        Gr.zero_();
      }
      std::fill(rs.begin(), rs.begin() + r, 0.0);
      for (int64_t c0 = 0; c0 < M; c0 += kCols) {
        const int64_t c = std::min(kCols, M - c0);
        const auto Bc = Bb.narrow(0, c0, c);
        at::Tensor K = buf.narrow(0, 0, r * c).view({r, c});
        at::mm_out(K, Ar, Bc.t());
        T* k = K.data_ptr<T>();
        to_exponent<T>(k, na, nbp + c0, r, c, gamma);
        exp_nonpos_inplace(k, r * c);
        for (int64_t i = 0; i < r; ++i) {
          const T* row = k + i * c;
          T s = 0;
#pragma omp simd reduction(+ : s)
          for (int64_t j = 0; j < c; ++j) s += row[j];
          rs[i] += static_cast<double>(s);
        }
        if (want_grad) Gr.addmm_(K, Bc);
      }
      double total = 0.0;
      for (int64_t i = 0; i < r; ++i) total += rs[i];
      partial[t] = total;
      if (want_grad) {
        // G_i = rowsum_i a_i - (K B)_i
        T* g = Gr.data_ptr<T>();
        const auto Ac = Ar.contiguous();
        const T* a = Ac.data_ptr<T>();
        for (int64_t i = 0; i < r; ++i) {
          const T s = static_cast<T>(rs[i]);
#pragma omp simd
          for (int64_t j = 0; j < C; ++j) g[i * C + j] = s * a[i * C + j] - g[i * C + j];
        }
      }
    }
  });
  auto sums = at::empty({nb}, A.options().dtype(at::kDouble));
  double* s = sums.data_ptr<double>();
  for (int64_t b = 0; b < nb; ++b) {
    double total = 0.0;  // fixed order: deterministic for any thread count
    for (int64_t blk = 0; blk < blocks; ++blk) total += partial[b * blocks + blk];
    s[b] = total;
  }
  return {sums, G};
}

std::tuple<at::Tensor, at::Tensor> cross_cpu(const at::Tensor& A, const at::Tensor& B,
                                             double gamma, bool want_grad) {
  if (A.scalar_type() == at::kDouble) return cross_cpu_impl<double>(A, B, gamma, want_grad);
  return cross_cpu_impl<float>(A, B, gamma, want_grad);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mmd_gaussian_cpu(
    const at::Tensor& x, const at::Tensor& y, double gamma, bool unbiased, bool grad_x,
    bool grad_y, const std::optional<at::Tensor>& yy) {
  check_mmd_gaussian_inputs(x, y, gamma, unbiased, grad_y, yy);
  return mmd_gaussian_assemble(x, y, gamma, unbiased, grad_x, grad_y, yy, &cross_cpu);
}

at::Tensor mmd_gaussian_self_cpu(const at::Tensor& y, double gamma) {
  check_mmd_self_inputs(y, gamma);
  const auto t = y.detach().to(mmd_acc_dtype(y.scalar_type())).contiguous();
  return std::get<0>(cross_cpu(t, t, gamma, false));
}

}  // namespace

TORCH_LIBRARY_IMPL(genint_fast, CPU, m) {
  m.impl("mmd_gaussian", &mmd_gaussian_cpu);
  m.impl("mmd_gaussian_self", &mmd_gaussian_self_cpu);
}

}  // namespace genint_fast
