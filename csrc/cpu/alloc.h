// Large CPU outputs: an empty tensor whose pages are advised to be transparent huge pages
// (Linux, THP in "madvise" mode) before anything touches them. A fresh multi-MiB output is
// otherwise first-touched 4 KiB at a time, and those page faults cost more than the kernels
// that fill it (a 32 MiB output: about 25 ms of faults against 5 ms with 2 MiB pages on the
// reference machine). PyTorch does the same for all its allocations when THP_MEM_ALLOC_ENABLE=1.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace genint_fast {

inline at::Tensor empty_like_hugepages(const at::Tensor& t) {
  at::Tensor out = at::empty_like(t, at::MemoryFormat::Contiguous);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t nbytes = static_cast<uintptr_t>(out.nbytes());
  if (out.device().is_cpu() && nbytes >= 4 * kHuge) {
    const uintptr_t p = reinterpret_cast<uintptr_t>(out.data_ptr());
    const uintptr_t lo = (p + kHuge - 1) & ~(kHuge - 1), hi = (p + nbytes) & ~(kHuge - 1);
    // Advisory only: a failure (THP off, an old kernel) leaves ordinary pages.
    if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
  }
#endif
  return out;
}

}  // namespace genint_fast
