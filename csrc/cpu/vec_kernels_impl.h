// The float32 inner loops of vec_kernels.h, written once with at::vec::Vectorized<float> and
// compiled per CPU capability: the including file defines GENINT_VEC_NS (and, for AVX2,
// CPU_CAPABILITY / CPU_CAPABILITY_AVX2 and the AVX2 target) first. No ATen ops, no allocation
// beyond a small per-call buffer: safe inside at::parallel_for workers.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "vec_kernels.h"

namespace genint_fast {
namespace vec {
namespace GENINT_VEC_NS {

using V = at::vec::Vectorized<float>;
using VI = at::vec::Vectorized<int32_t>;
constexpr int64_t kW = V::size();
constexpr int64_t kAcc = 8;  // dot-product accumulators kept in registers

// exp(x) for x <= 0, Cephes-style: x = r ln2 + g with |g| <= ln2/2, a degree-6 polynomial in g
// and 2^r through the exponent bits (about 2 ulp). x < -87 gives 0; NaN stays NaN.
inline V exp_nonpos_v(const V& x) {
  const V xc = at::vec::maximum(x, V(-87.0f));
  const V r = (xc * V(1.44269504088896341f)).round();
  V g = at::vec::fmadd(r, V(-0.693359375f), xc);
  g = at::vec::fmadd(r, V(2.12194440e-4f), g);
  V q = V(1.9875691500e-4f);
  q = at::vec::fmadd(q, g, V(1.3981999507e-3f));
  q = at::vec::fmadd(q, g, V(8.3334519073e-3f));
  q = at::vec::fmadd(q, g, V(4.1665795894e-2f));
  q = at::vec::fmadd(q, g, V(1.6666665459e-1f));
  q = at::vec::fmadd(q, g, V(5.0000001201e-1f));
  const V e = at::vec::fmadd(q, g * g, g + V(1.0f));
  const VI n = at::vec::convert_to_int_of_same_size<float>(r);
  const VI bits = (n + VI(127)) << VI(23);
  V v = e * at::vec::cast<float>(bits);
  v = V::blendv(v, V(0.0f), x < V(-87.0f));
  return V::blendv(v, x, x != x);  // NaN stays NaN
}

// tile[i, j] <- exp(-gamma * max(na[i] + nb[j] - 2 tile[i, j], 0)) for an r x c tile of dot
// products: the Gaussian kernel values in one pass (NaN stays NaN).
void gauss_tile(float* tile, const float* na, const float* nb, int64_t r, int64_t c,
                float gamma) {
  const V ng(-gamma), two(2.0f), zero(0.0f);
  for (int64_t i = 0; i < r; ++i) {
    float* row = tile + i * c;
    const V a(na[i]);
    int64_t j = 0;
    for (; j + kW <= c; j += kW) {
      const V d = at::vec::maximum(a + V::loadu(nb + j) - two * V::loadu(row + j), zero);
      exp_nonpos_v(d * ng).store(row + j);
    }
    if (j < c) {
      const int64_t rest = c - j;
      const V x = V::loadu(row + j, rest);
      const V d = at::vec::maximum(a + V::loadu(nb + j, rest) - two * x, zero);
      exp_nonpos_v(d * ng).store(row + j, static_cast<int>(rest));
    }
  }
}

inline V load(const float* p, int64_t rest) {
  return rest >= kW ? V::loadu(p) : V::loadu(p, rest);
}
inline void store(const V& v, float* p, int64_t rest) {
  if (rest >= kW) {
    v.store(p);
  } else {
    v.store(p, static_cast<int>(rest));
  }
}
inline float hsum(const V& v) {
  return at::vec::vec_reduce_all<float>([](V& a, V& b) { return a + b; }, v);
}

// sum_d (a[d] - c[d]) * u[d] (c may be null)
inline float dot(const float* a, const float* c, const float* u, int64_t D) {
  V s0(0.0f), s1(0.0f);
  int64_t d = 0;
  for (; d + 2 * kW <= D; d += 2 * kW) {
    V a0 = V::loadu(a + d), a1 = V::loadu(a + d + kW);
    if (c) {
      a0 = a0 - V::loadu(c + d);
      a1 = a1 - V::loadu(c + d + kW);
    }
    s0 = at::vec::fmadd(a0, V::loadu(u + d), s0);
    s1 = at::vec::fmadd(a1, V::loadu(u + d + kW), s1);
  }
  for (; d < D; d += kW) {
    V a0 = load(a + d, D - d);
    if (c) a0 = a0 - load(c + d, D - d);
    s0 = at::vec::fmadd(a0, load(u + d, D - d), s0);
  }
  return hsum(s0 + s1);
}

// a[d] += s * u[d]
inline void axpy(float s, const float* u, float* a, int64_t D) {
  const V sv(s);
  for (int64_t d = 0; d < D; d += kW) {
    store(at::vec::fmadd(sv, load(u + d, D - d), load(a + d, D - d)), a + d, D - d);
  }
}

// Pre-clamp "set" row into buf: for m in order, buf <- buf + (alpha_m - (buf - mu) . u_m) u_m.
inline void set_row(const SteerArgs& a, int64_t b, float* buf) {
  const int64_t D = a.D, M = a.M;
  std::copy(a.z + b * D, a.z + (b + 1) * D, buf);
  for (int64_t m = 0; m < M; ++m) {
    const float* u = a.U + a.idx[b * M + m] * D;
    const float p = dot(buf, a.mu, u, D);
    axpy(a.alpha[b * M + m] - p, u, buf, D);
  }
}

// One "add" vector of columns [d, d + kW): z - mu + sum_m c_m u_m (pre-clamp).
inline V add_cols(const SteerArgs& a, const float* zb, const float* cm, const float* const* um,
                  int64_t d, int64_t rest) {
  V acc = load(zb + d, rest) - load(a.mu + d, rest);
  for (int64_t m = 0; m < a.M; ++m) acc = at::vec::fmadd(V(cm[m]), load(um[m] + d, rest), acc);
  return acc;
}

void steer_forward(const SteerArgs& a, int64_t b0, int64_t b1) {
  const int64_t D = a.D, M = a.M;
  const V lo(-a.clamp), hi(a.clamp);
  std::vector<float> cm(M);
  std::vector<const float*> um(M);
  for (int64_t b = b0; b < b1; ++b) {
    float* ob = a.out + b * D;
    if (a.set_mode) {
      set_row(a, b, ob);
      if (a.has_clamp) {
        for (int64_t d = 0; d < D; d += kW) {
          const int64_t rest = D - d;
          store(at::vec::minimum(at::vec::maximum(load(ob + d, rest), lo), hi), ob + d, rest);
        }
      }
      continue;
    }
    for (int64_t m = 0; m < M; ++m) {
      const int64_t k = a.idx[b * M + m];
      cm[m] = a.sigma[k] * a.alpha[b * M + m];
      um[m] = a.U + k * D;
    }
    const float* zb = a.z + b * D;
    for (int64_t d = 0; d < D; d += kW) {
      const int64_t rest = D - d;
      V v = add_cols(a, zb, cm.data(), um.data(), d, rest);
      if (a.has_clamp) v = at::vec::minimum(at::vec::maximum(v, lo), hi);
      store(v, ob + d, rest);
    }
  }
}

void steer_backward(const SteerArgs& a, int64_t b0, int64_t b1) {
  const int64_t D = a.D, M = a.M;
  const V lo(-a.clamp), hi(a.clamp), zero(0.0f);
  std::vector<float> cm(M), pre(a.set_mode && a.has_clamp ? D : 0);
  std::vector<const float*> um(M);
  for (int64_t b = b0; b < b1; ++b) {
    const float* gb = a.grad + b * D;
    float* gz = a.out + b * D;
    float* db = a.dots + b * M;
    const int64_t* ib = a.idx + b * M;
    if (!a.set_mode) {
      // One pass over the row: mask the incoming gradient by the clamp (recomputing the
      // pre-clamp value), store it as grad_z and accumulate its dot products with the first
      // kAcc directions in registers; further directions (M > kAcc) re-read the stored row.
      for (int64_t m = 0; m < M; ++m) {
        um[m] = a.U + ib[m] * D;
        cm[m] = a.sigma[ib[m]] * a.alpha[b * M + m];
      }
      const float* zb = a.z + b * D;
      const int64_t m1 = std::min(M, kAcc);
      V acc[kAcc];
      for (int64_t m = 0; m < m1; ++m) acc[m] = zero;
      for (int64_t d = 0; d < D; d += kW) {
        const int64_t rest = D - d;
        V g = load(gb + d, rest);
        if (a.has_clamp) {
          const V p = add_cols(a, zb, cm.data(), um.data(), d, rest);
          g = V::blendv(zero, g, (p >= lo) & (p <= hi));
        }
        store(g, gz + d, rest);
        for (int64_t m = 0; m < m1; ++m) acc[m] = at::vec::fmadd(g, load(um[m] + d, rest), acc[m]);
      }
      for (int64_t m = 0; m < m1; ++m) db[m] = hsum(acc[m]);
      for (int64_t m = m1; m < M; ++m) db[m] = dot(gz, nullptr, um[m], D);
      continue;
    }
    // "set": step m maps z to (I - u u^T) z + const, so the gradient reaching step m-1 is
    // (I - u u^T) g; dots[m] = u . g is the gradient of alpha[m].
    if (a.has_clamp) {
      set_row(a, b, pre.data());
      for (int64_t d = 0; d < D; d += kW) {
        const int64_t rest = D - d;
        const V p = load(pre.data() + d, rest);
        store(V::blendv(zero, load(gb + d, rest), (p >= lo) & (p <= hi)), gz + d, rest);
      }
    } else {
      std::copy(gb, gb + D, gz);
    }
    for (int64_t m = M - 1; m >= 0; --m) {
      const float* u = a.U + ib[m] * D;
      const float s = dot(gz, nullptr, u, D);
      db[m] = s;
      axpy(-s, u, gz, D);
    }
  }
}

}  // namespace GENINT_VEC_NS
}  // namespace vec
}  // namespace genint_fast
