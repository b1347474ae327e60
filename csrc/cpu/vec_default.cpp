// Baseline (no AVX2) build of vec_kernels_impl.h, and the run-time choice between the builds.
#define GENINT_VEC_NS vec_default
#include "vec_kernels_impl.h"

#include <cstdlib>
#include <string>

namespace genint_fast {
namespace vec {

const Kernels kernels_default = {"default", &vec_default::gauss_tile, nullptr, nullptr};

// AVX2 when the CPU has AVX2 and FMA, unless ATEN_CPU_CAPABILITY=default asks for the baseline
// (the variable ATen reads for its own kernels; the tests use it to run the baseline build).
const Kernels& vec_kernels() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool avx2 = [] {
    const char* env = std::getenv("ATEN_CPU_CAPABILITY");
    if (env != nullptr && std::string(env) == "default") return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return avx2 ? kernels_avx2 : kernels_default;
#else
  return kernels_default;
#endif
}

}  // namespace vec
}  // namespace genint_fast
