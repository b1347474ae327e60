// CPU kernels of the steering op: one pass over each row of z, rows split across threads with
// at::parallel_for (OpenMP in PyTorch's builds). float32 rows on an AVX2 CPU go through the
// Vectorized<float> loops of cpu/vec_kernels.h; everything else uses the scalar loops below (half
// and bfloat16 accumulate in float32). Large outputs get transparent huge pages (cpu/alloc.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "steer.h"
#include "cpu/alloc.h"
#include "cpu/vec_kernels.h"

namespace genint_fast {
namespace {

// Rows per parallel task: enough work per task to amortise scheduling.
int64_t row_grain(int64_t D, int64_t M) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, D * (M + 1)));
}

// Computes the pre-clamp steered row into buf (length D).
template <typename scalar_t, typename acc_t>
inline void forward_row(const scalar_t* z, const scalar_t* U, const scalar_t* sigma,
                        const scalar_t* mu, const int64_t* idx, const scalar_t* alpha, int64_t D,
                        int64_t M, SteerMode mode, acc_t* buf) {
  if (mode == SteerMode::Add) {
    for (int64_t d = 0; d < D; ++d) buf[d] = acc_t(z[d]) - acc_t(mu[d]);
    for (int64_t m = 0; m < M; ++m) {
      const int64_t k = idx[m];
      const acc_t c = acc_t(sigma[k]) * acc_t(alpha[m]);
      const scalar_t* u = U + k * D;
      for (int64_t d = 0; d < D; ++d) buf[d] += c * acc_t(u[d]);
    }
  } else {
    for (int64_t d = 0; d < D; ++d) buf[d] = acc_t(z[d]);
    for (int64_t m = 0; m < M; ++m) {
      const scalar_t* u = U + idx[m] * D;
      acc_t p = 0;
      for (int64_t d = 0; d < D; ++d) p += (buf[d] - acc_t(mu[d])) * acc_t(u[d]);
      const acc_t c = acc_t(alpha[m]) - p;
      for (int64_t d = 0; d < D; ++d) buf[d] += c * acc_t(u[d]);
    }
  }
}

// float32 on an AVX2 CPU: the Vectorized<float> row loops of cpu/vec_kernels.h, rows split
// across threads. Returns false otherwise (other dtypes; the baseline build, whose generic
// Vectorized<float> is slower than the scalar loops below, has no steer kernels).
bool steer_vec(const float* z, const float* U, const float* sigma, const float* mu,
               const int64_t* idx, const float* alpha, const float* grad, float* out,
               float* dots, int64_t B, int64_t D, int64_t M, SteerMode mode, bool has_clamp,
               float c, bool backward) {
  const auto& kern = vec::vec_kernels();
  const auto fn = backward ? kern.steer_backward : kern.steer_forward;
  if (fn == nullptr) return false;
  const vec::SteerArgs args{z, U, sigma, mu, idx, alpha, grad, out, dots, D, M,
                            mode == SteerMode::Set, has_clamp, c};
  at::parallel_for(0, B, row_grain(D, M),
                   [&](int64_t begin, int64_t end) { fn(args, begin, end); });
  return true;
}

template <typename T, typename A>
bool steer_vec(const T*, const T*, const T*, const T*, const int64_t*, const T*, const T*, T*, A*,
               int64_t, int64_t, int64_t, SteerMode, bool, A, bool) {
  return false;
}

struct Inputs {
  at::Tensor z, U, sigma, mu, idx, alpha;
};

Inputs contiguous_inputs(const at::Tensor& z, const at::Tensor& U, const at::Tensor& sigma,
                         const at::Tensor& mu, const at::Tensor& idx, const at::Tensor& alpha) {
  return {z.contiguous(), U.contiguous(), sigma.contiguous(), mu.contiguous(), idx.contiguous(),
          alpha.contiguous()};
}

at::Tensor steer_cpu(const at::Tensor& z_, const at::Tensor& U_, const at::Tensor& sigma_,
                     const at::Tensor& mu_, const at::Tensor& idx_, const at::Tensor& alpha_,
                     c10::string_view mode_str, std::optional<double> clamp) {
  check_steer_inputs(z_, U_, sigma_, mu_, idx_, alpha_, clamp);
  const SteerMode mode = parse_steer_mode(mode_str);
  const auto in = contiguous_inputs(z_, U_, sigma_, mu_, idx_, alpha_);
  const int64_t B = in.z.size(0), D = in.z.size(1), M = in.idx.size(1);
  at::Tensor out = empty_like_hugepages(in.z);
  if (B == 0 || D == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.z.scalar_type(), "steer_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* z = in.z.data_ptr<scalar_t>();
    const scalar_t* U = in.U.data_ptr<scalar_t>();
    const scalar_t* sigma = in.sigma.data_ptr<scalar_t>();
    const scalar_t* mu = in.mu.data_ptr<scalar_t>();
    const int64_t* idx = in.idx.data_ptr<int64_t>();
    const scalar_t* alpha = in.alpha.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const bool has_clamp = clamp.has_value();
    const acc_t c = has_clamp ? acc_t(*clamp) : acc_t(0);
    if (steer_vec(z, U, sigma, mu, idx, alpha, static_cast<const scalar_t*>(nullptr), o,
                  static_cast<acc_t*>(nullptr), B, D, M, mode, has_clamp, c, false)) {
      return;
    }
    at::parallel_for(0, B, row_grain(D, M), [&](int64_t begin, int64_t end) {
      // float32 / float64 rows are steered in place in the output; half rows in a float buffer.
      constexpr bool in_place = std::is_same_v<scalar_t, acc_t>;
      std::vector<acc_t> buf(in_place ? 0 : D);
      for (int64_t b = begin; b < end; ++b) {
        scalar_t* ob = o + b * D;
        acc_t* row = in_place ? reinterpret_cast<acc_t*>(ob) : buf.data();
        forward_row<scalar_t, acc_t>(z + b * D, U, sigma, mu, idx + b * M, alpha + b * M, D, M,
                                     mode, row);
        if (has_clamp) {
          for (int64_t d = 0; d < D; ++d) row[d] = std::min(std::max(row[d], -c), c);
        }
        if constexpr (!in_place) {
          for (int64_t d = 0; d < D; ++d) ob[d] = scalar_t(row[d]);
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> steer_backward_cpu(
    const at::Tensor& grad_, const at::Tensor& z_, const at::Tensor& U_, const at::Tensor& sigma_,
    const at::Tensor& mu_, const at::Tensor& idx_, const at::Tensor& alpha_,
    c10::string_view mode_str, std::optional<double> clamp) {
  check_steer_inputs(z_, U_, sigma_, mu_, idx_, alpha_, clamp, &grad_);
  const SteerMode mode = parse_steer_mode(mode_str);
  const auto in = contiguous_inputs(z_, U_, sigma_, mu_, idx_, alpha_);
  const at::Tensor grad = grad_.contiguous();
  const int64_t B = in.z.size(0), D = in.z.size(1), M = in.idx.size(1);
  at::Tensor grad_z = empty_like_hugepages(in.z);
  at::Tensor dots = at::zeros({B, M}, in.z.options().dtype(steer_acc_dtype(in.z.scalar_type())));
  if (B == 0) return {grad_z, dots};
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.z.scalar_type(), "steer_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* z = in.z.data_ptr<scalar_t>();
        const scalar_t* U = in.U.data_ptr<scalar_t>();
        const scalar_t* sigma = in.sigma.data_ptr<scalar_t>();
        const scalar_t* mu = in.mu.data_ptr<scalar_t>();
        const int64_t* idx = in.idx.data_ptr<int64_t>();
        const scalar_t* alpha = in.alpha.data_ptr<scalar_t>();
        const scalar_t* g = grad.data_ptr<scalar_t>();
        scalar_t* gz = grad_z.data_ptr<scalar_t>();
        acc_t* dt = dots.data_ptr<acc_t>();
        const bool has_clamp = clamp.has_value();
        const acc_t c = has_clamp ? acc_t(*clamp) : acc_t(0);
        if (steer_vec(z, U, sigma, mu, idx, alpha, g, gz, dt, B, D, M, mode, has_clamp, c,
                      true)) {
          return;
        }
        at::parallel_for(0, B, row_grain(D, M), [&](int64_t begin, int64_t end) {
          std::vector<acc_t> pre(has_clamp ? D : 0), gm(D);
          for (int64_t b = begin; b < end; ++b) {
            const scalar_t* gb = g + b * D;
            const int64_t* ib = idx + b * M;
            acc_t* db = dt + b * M;
            if (has_clamp) {
              // Recompute the pre-clamp output: clamp passes gradient where -c <= x <= c.
              forward_row<scalar_t, acc_t>(z + b * D, U, sigma, mu, ib, alpha + b * M, D, M,
                                           mode, pre.data());
              for (int64_t d = 0; d < D; ++d)
                gm[d] = (pre[d] >= -c && pre[d] <= c) ? acc_t(gb[d]) : acc_t(0);
            } else {
              for (int64_t d = 0; d < D; ++d) gm[d] = acc_t(gb[d]);
            }
            if (mode == SteerMode::Add) {
              for (int64_t m = 0; m < M; ++m) {
                const scalar_t* u = U + ib[m] * D;
                acc_t s = 0;
                for (int64_t d = 0; d < D; ++d) s += gm[d] * acc_t(u[d]);
                db[m] = s;
              }
            } else {
              // Step m maps z to (I - u u^T) z + const, so the gradient reaching step m-1 is
              // (I - u u^T) g; dots[m] = u . g is the gradient of alpha[m].
              for (int64_t m = M - 1; m >= 0; --m) {
                const scalar_t* u = U + ib[m] * D;
                acc_t s = 0;
                for (int64_t d = 0; d < D; ++d) s += gm[d] * acc_t(u[d]);
                db[m] = s;
                for (int64_t d = 0; d < D; ++d) gm[d] -= s * acc_t(u[d]);
              }
            }
            scalar_t* gzb = gz + b * D;
            for (int64_t d = 0; d < D; ++d) gzb[d] = scalar_t(gm[d]);
          }
        });
      });
  return {grad_z, dots};
}

}  // namespace

TORCH_LIBRARY_IMPL(genint_fast, CPU, m) {
  m.impl("steer", &steer_cpu);
  m.impl("steer_backward", &steer_backward_cpu);
}

}  // namespace genint_fast
