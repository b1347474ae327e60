// AVX2 + FMA build of vec_kernels_impl.h, as ATen builds its CPU_CAPABILITY=AVX2 kernels: the
// Vectorized<float> of this file is the 256-bit AVX2 one (its definitions live in the namespace
// at::vec::AVX2). The other headers come first, under the baseline target, so that their inline
// functions are not compiled for AVX2 here (the linker could otherwise keep an AVX2 copy for the
// whole library); vec_kernels() only calls into this file on CPUs with AVX2 and FMA.
#if defined(__x86_64__) || defined(__i386__)
// Everything ATen's vec headers include outside the at::vec::AVX2 namespace, first, under the
// baseline target.
#include <ATen/NumericUtils.h>
#include <ATen/native/Math.h>
#include <c10/util/BFloat16-math.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/complex.h>
#include <c10/util/irange.h>
#include <c10/util/TypeCast.h>
#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <vector>
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
// sleef.h declares its 256-bit functions (which Vectorized<float> names; exp_u20 and our kernels
// do not call them) under __AVX__, which GCC's target pragma does not define.
#ifndef __AVX__
#define __AVX__ 1
#define GENINT_UNDEF_AVX
#endif
#include <sleef.h>
#ifdef GENINT_UNDEF_AVX
#undef __AVX__
#undef GENINT_UNDEF_AVX
#endif
#define GENINT_VEC_NS vec_avx2
#include "vec_kernels_impl.h"
#pragma GCC pop_options

namespace genint_fast {
namespace vec {
const Kernels kernels_avx2 = {"avx2", &vec_avx2::gauss_tile, &vec_avx2::steer_forward,
                              &vec_avx2::steer_backward};
}  // namespace vec
}  // namespace genint_fast
#endif  // x86: elsewhere vec_kernels() only uses the baseline build
