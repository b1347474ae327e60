// CPU kernels of the Gaussian-kernel MMD (see mmd.h for the notation).
//
// The cross term S(A, B) and its gradient G(A, B) are computed tile by tile: tasks are
// (batch element, block of kRows rows of A) split across threads with at::parallel_for; each
// task walks B in chunks of kCols rows. Per tile: one small GEMM (at::mm_out, single-threaded
// inside the parallel region) gives the dot products, one vectorised pass turns them into kernel
// values exp(-gamma (|a|^2 + |b|^2 - 2 a.b)) (of inputs centred by mmd_gaussian_assemble) and
// row sums, and for the gradient one more small GEMM accumulates K @ B into the task's own rows
// of G. A tile is kRows x kCols floats (256 KiB), so it stays in L2 and no N x M matrix is
// formed. The workers run under the caller's
// thread-local state (at::ThreadLocalStateGuard). Half and bfloat16 inputs compute in float32,
// float64 in float64; row sums and the total are accumulated in float64 per tile.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "mmd.h"
#include "cpu/vec_kernels.h"

namespace genint_fast {
namespace {

constexpr int64_t kRows = 128;
constexpr int64_t kCols = 512;

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

// tile <- exp(-gamma * max(na[i] + nb[j] - 2 tile, 0)): the kernel values of a tile of dot
// products. float32: one Vectorized<float> pass (cpu/vec_kernels.h: AVX2 + FMA or baseline,
// chosen at run time; exp to about 2 ulp, NaN stays NaN); float64: std::exp.
void gauss_tile(float* tile, const float* na, const float* nb, int64_t r, int64_t c,
                float gamma) {
  vec::vec_kernels().gauss_tile(tile, na, nb, r, c, gamma);
}
void gauss_tile(double* tile, const double* na, const double* nb, int64_t r, int64_t c,
                double gamma) {
  to_exponent<double>(tile, na, nb, r, c, gamma);
  for (int64_t i = 0; i < r * c; ++i) tile[i] = std::exp(tile[i]);
}

struct ColRange {
  int64_t begin, end;
  double weight;
};

// The column ranges of row block `blk` and their weights. In general all of B with weight 1. For
// a symmetric sum (B is A, no gradient) each unordered pair of blocks is visited once: the block
// itself with weight 1 and the next h blocks cyclically (plus the opposite block for half of the
// blocks when their number is even) with weight 2, which halves the work and gives every task
// about the same share.
void col_ranges(int64_t blk, int64_t blocks, int64_t N, int64_t M, bool symmetric,
                std::vector<ColRange>& out) {
  out.clear();
  if (!symmetric) {
    out.push_back({0, M, 1.0});
    return;
  }
  auto rows_of = [&](int64_t b0, int64_t b1) {  // blocks [b0, b1] -> rows
    return ColRange{b0 * kRows, std::min(N, (b1 + 1) * kRows), 2.0};
  };
  out.push_back({blk * kRows, std::min(N, (blk + 1) * kRows), 1.0});
  const int64_t h = (blocks - 1) / 2;
  if (h > 0) {
    const int64_t first = blk + 1, last = blk + h;
    if (last < blocks) {
      out.push_back(rows_of(first, last));
    } else {
      if (first < blocks) out.push_back(rows_of(first, blocks - 1));
      out.push_back(rows_of(std::max<int64_t>(first - blocks, 0), last - blocks));
    }
  }
  if (blocks % 2 == 0 && blk < blocks / 2) {
    const int64_t opp = blk + blocks / 2;
    out.push_back(rows_of(opp, opp));
  }
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> cross_cpu_impl(const at::Tensor& A, const at::Tensor& B,
                                                  double gamma_d, bool want_grad) {
  const bool symmetric = !want_grad && A.is_same(B);
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
  // The workers call ATen ops (mm_out, addmm_): they run under the caller's thread-local state
  // (grad mode, inference mode, dispatch key sets), which worker threads do not inherit.
  const at::ThreadLocalState tls;
  at::parallel_for(0, tasks, grain, [&](int64_t t0, int64_t t1) {
    at::ThreadLocalStateGuard tls_guard(tls);
    at::Tensor buf = at::empty({kRows * std::min(kCols, M)}, A.options());
    std::vector<double> rs(kRows);
    std::vector<ColRange> ranges;
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
      col_ranges(blk, blocks, N, M, symmetric, ranges);
      for (const ColRange& range : ranges)
      for (int64_t c0 = range.begin; c0 < range.end; c0 += kCols) {
        const int64_t c = std::min(kCols, range.end - c0);
        const auto Bc = Bb.narrow(0, c0, c);
        at::Tensor K = buf.narrow(0, 0, r * c).view({r, c});
        at::mm_out(K, Ar, Bc.t());
        T* k = K.data_ptr<T>();
        gauss_tile(k, na, nbp + c0, r, c, gamma);
        for (int64_t i = 0; i < r; ++i) {
          const T* row = k + i * c;
          T s = 0;
#pragma omp simd reduction(+ : s)
          for (int64_t j = 0; j < c; ++j) s += row[j];
          rs[i] += range.weight * static_cast<double>(s);
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

// The x-x term with its gradient, visiting each unordered pair of row blocks once. A tile (I, J)
// adds K A_J to G_I and K^T A_I to G_J, so two tasks must never share a block: the pairs are
// scheduled as a round-robin tournament (circle method), every round a set of disjoint pairs
// run in parallel, plus one round of diagonal tiles. No buffer beyond one tile per thread.
constexpr int64_t kSymRows = 256;

template <typename T>
std::tuple<at::Tensor, at::Tensor> cross_self_grad_impl(const at::Tensor& A, double gamma_d) {
  const int64_t nbatch = A.size(0), N = A.size(1), C = A.size(2);
  const T gamma = static_cast<T>(gamma_d);
  const auto norms = A.square().sum(-1).contiguous();  // (nbatch, N)
  at::Tensor G = at::zeros({nbatch, N, C}, A.options());
  const int64_t blocks = (N + kSymRows - 1) / kSymRows;
  const int64_t players = blocks + (blocks % 2);  // a dummy block makes the count even
  const int64_t per_round = players / 2;
  const int64_t rounds = players - 1;
  // One slot per tile (round, k) and per diagonal tile: a fixed-order sum at the end, so the
  // result does not depend on the thread count.
  const int64_t slots = rounds * per_round + blocks;
  std::vector<double> totals(static_cast<size_t>(nbatch * slots), 0.0);
  std::vector<double> rs(static_cast<size_t>(nbatch * N), 0.0);
  auto pair_of = [&](int64_t round, int64_t k) -> std::pair<int64_t, int64_t> {
    if (round == rounds) return {k, k};  // the diagonal round (k < blocks)
    if (k == 0) return {players - 1, round};
    const int64_t m = players - 1;
    return {(round + k) % m, (round - k + m) % m};
  };
  const at::ThreadLocalState tls;  // see cross_cpu_impl
  for (int64_t round = 0; round <= rounds; ++round) {
    const int64_t width = round == rounds ? blocks : per_round;
    const int64_t grain =
        std::max<int64_t>(1, (1 << 22) / std::max<int64_t>(1, kSymRows * kSymRows * C));
    at::parallel_for(0, nbatch * width, grain, [&](int64_t t0, int64_t t1) {
      at::ThreadLocalStateGuard tls_guard(tls);
      at::Tensor buf = at::empty({kSymRows * kSymRows}, A.options());
      std::vector<T> colsum(kSymRows);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t b = t / width, k = t % width;
        auto [I, J] = pair_of(round, k);
        if (I >= blocks || J >= blocks) continue;  // the dummy's bye
        const bool diag = I == J;
        const int64_t ri0 = I * kSymRows, ri = std::min(kSymRows, N - ri0);
        const int64_t rj0 = J * kSymRows, rj = std::min(kSymRows, N - rj0);
        const auto Ab = A[b];
        const auto AI = Ab.narrow(0, ri0, ri), AJ = Ab.narrow(0, rj0, rj);
        at::Tensor K = buf.narrow(0, 0, ri * rj).view({ri, rj});
        at::mm_out(K, AI, AJ.t());
        T* kp = K.data_ptr<T>();
        const T* nrm = norms.data_ptr<T>() + b * N;
        gauss_tile(kp, nrm + ri0, nrm + rj0, ri, rj, gamma);
        double* rsb = rs.data() + b * N;
        std::fill(colsum.begin(), colsum.begin() + rj, T(0));
        double total = 0.0;
        for (int64_t i = 0; i < ri; ++i) {
          const T* row = kp + i * rj;
          T s = 0;
          T* cs = colsum.data();
#pragma omp simd reduction(+ : s)
          for (int64_t j = 0; j < rj; ++j) {
            s += row[j];
            cs[j] += row[j];
          }
          rsb[ri0 + i] += static_cast<double>(s);
          total += static_cast<double>(s);
        }
        auto Gb = G[b];
        Gb.narrow(0, ri0, ri).addmm_(K, AJ);
        if (!diag) {
          for (int64_t j = 0; j < rj; ++j) rsb[rj0 + j] += static_cast<double>(colsum[j]);
          Gb.narrow(0, rj0, rj).addmm_(K.t(), AI);
          total *= 2.0;
        }
        totals[b * slots + (diag ? rounds * per_round + k : round * per_round + k)] = total;
      }
    });
  }
  auto sums = at::empty({nbatch}, A.options().dtype(at::kDouble));
  double* out = sums.data_ptr<double>();
  for (int64_t b = 0; b < nbatch; ++b) {
    double total = 0.0;
    for (int64_t q = 0; q < slots; ++q) total += totals[b * slots + q];
    out[b] = total;
  }
  // G_i = rowsum_i a_i - (K A)_i
  const auto Ac = A.contiguous();
  at::parallel_for(0, nbatch * N, 1024, [&](int64_t r0, int64_t r1) {
    T* g = G.data_ptr<T>();
    const T* a = Ac.data_ptr<T>();
    for (int64_t r = r0; r < r1; ++r) {
      const T s = static_cast<T>(rs[r]);
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) g[r * C + c] = s * a[r * C + c] - g[r * C + c];
    }
  });
  return {sums, G};
}

std::tuple<at::Tensor, at::Tensor> cross_cpu(const at::Tensor& A, const at::Tensor& B,
                                             double gamma, bool want_grad) {
  const bool dbl = A.scalar_type() == at::kDouble;
  if (want_grad && A.is_same(B)) {
    return dbl ? cross_self_grad_impl<double>(A, gamma) : cross_self_grad_impl<float>(A, gamma);
  }
  return dbl ? cross_cpu_impl<double>(A, B, gamma, want_grad)
             : cross_cpu_impl<float>(A, B, gamma, want_grad);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mmd_gaussian_cpu(
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& gamma, bool unbiased,
    bool grad_x, bool grad_y, const std::optional<at::Tensor>& yy) {
  check_mmd_gaussian_inputs(x, y, gamma, unbiased, grad_y, yy);
  return mmd_gaussian_assemble(x, y, gamma, unbiased, grad_x, grad_y, yy, &cross_cpu);
}

at::Tensor mmd_gaussian_self_cpu(const at::Tensor& y, const at::Tensor& gamma) {
  check_mmd_self_inputs(y, gamma);
  const auto t = mmd_self_prepare(y, gamma);  // centred and scaled as in the assembly
  return std::get<0>(cross_cpu(t, t, 1.0, false));
}

}  // namespace

TORCH_LIBRARY_IMPL(genint_fast, CPU, m) {
  m.impl("mmd_gaussian", &mmd_gaussian_cpu);
  m.impl("mmd_gaussian_self", &mmd_gaussian_self_cpu);
}

}  // namespace genint_fast
