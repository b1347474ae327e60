// Float32 inner loops of the CPU kernels written with ATen's at::vec::Vectorized<float>. The same
// source (vec_kernels_impl.h) is compiled twice, the way ATen builds its own CPU kernels: once
// for CPU_CAPABILITY=AVX2 (vec_avx2.cpp, AVX2 + FMA) and once for the baseline (vec_default.cpp);
// vec_kernels() picks one at run time from the CPU's features. No ATen op is called inside them,
// so they are safe to run inside at::parallel_for workers.
#pragma once

#include <cstdint>

namespace genint_fast {
namespace vec {

// One steer call on float32 rows (see csrc/cpu/steer.cpp); pointers are to contiguous data.
struct SteerArgs {
  const float* z;      // (B, D)
  const float* U;      // (K, D)
  const float* sigma;  // (K,)
  const float* mu;     // (D,)
  const int64_t* idx;  // (B, M)
  const float* alpha;  // (B, M)
  const float* grad;   // (B, D), backward only
  float* out;          // (B, D): the output (forward) or grad_z (backward)
  float* dots;         // (B, M), backward only
  int64_t D, M;
  bool set_mode;
  bool has_clamp;
  float clamp;
};

struct Kernels {
  const char* name;
  // tile[i, j] <- exp(-gamma * max(na[i] + nb[j] - 2 tile[i, j], 0)), r x c row-major (exp to
  // about 2 ulp; NaN stays NaN).
  void (*gauss_tile)(float* tile, const float* na, const float* nb, int64_t r, int64_t c,
                     float gamma);
  // Rows [b0, b1) of the forward / backward; null in the baseline build, where the generic
  // Vectorized<float> loses to the scalar loops of steer.cpp.
  void (*steer_forward)(const SteerArgs& a, int64_t b0, int64_t b1);
  void (*steer_backward)(const SteerArgs& a, int64_t b0, int64_t b1);
};

extern const Kernels kernels_avx2;
extern const Kernels kernels_default;
const Kernels& vec_kernels();

}  // namespace vec
}  // namespace genint_fast
