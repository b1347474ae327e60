// A host emulator for simple CUDA kernels, for tests only (GENINT_FAST_EMULATE_CUDA): a launch
// runs the grid's blocks one after another, each block as blockDim.x std::threads that share the
// kernel's `static` (shared-memory) arrays and meet at syncthreads(); warp shuffles exchange
// values among the 32 threads of a warp (all of which must take part, as with a full mask), and
// check() records a failed device-side assert instead of trapping. It checks a kernel's indexing,
// masking, shuffles and block-level reductions on a machine without a GPU; it says nothing about
// the memory model or speed.
#pragma once

#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

struct EmuDim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline thread_local EmuDim3 threadIdx, blockIdx;
inline EmuDim3 gridDim, blockDim;

namespace genint_fast {
namespace emu {

// A reusable barrier for the threads of one block.
class Barrier {
 public:
  void reset(int n) {
    count_ = n;
    waiting_ = 0;
    generation_ = 0;
  }
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(m_);
    const unsigned long gen = generation_;
    if (++waiting_ == count_) {
      waiting_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int count_ = 0, waiting_ = 0;
  unsigned long generation_ = 0;
};

inline Barrier& block_barrier() {
  static Barrier b;
  return b;
}

inline void syncthreads() { block_barrier().arrive_and_wait(); }

// Per warp of the running block: a barrier and 32 exchange slots of 8 bytes.
struct Warp {
  Barrier barrier;
  uint64_t slot[32];
};

inline std::vector<Warp>& warps() {
  static std::vector<Warp> w(32);  // up to 1024 threads per block
  return w;
}

template <typename T>
T shfl(T v, int src_lane) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
  Warp& w = warps()[threadIdx.x / 32];
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  w.slot[threadIdx.x % 32] = bits;
  w.barrier.arrive_and_wait();  // every lane has written
  const uint64_t got = w.slot[src_lane & 31];
  w.barrier.arrive_and_wait();  // every lane has read before the slots are reused
  T out;
  std::memcpy(&out, &got, sizeof(T));
  return out;
}

template <typename T>
T shfl_xor(T v, int mask) {
  return shfl(v, static_cast<int>(threadIdx.x % 32) ^ mask);
}

// Failed device-side asserts (the kernel goes on, as it would were asserts compiled out).
inline int& failed_asserts() {
  static int n = 0;
  return n;
}

inline void check(bool cond, const char* what) {
  if (!cond) {
    static std::mutex m;
    std::lock_guard<std::mutex> lock(m);
    if (failed_asserts()++ == 0) std::fprintf(stderr, "emulated device assert failed: %s\n", what);
  }
}

// Runs kernel(args...) over grid x block, block by block: blockDim.x threads, created once per
// launch, walk the blocks together, meeting at a barrier of their own after each block (so a block's
// shared memory is not reused while a thread still runs in it).
template <typename Kernel, typename... Args>
void launch(EmuDim3 grid, EmuDim3 block, Kernel kernel, Args... args) {
  gridDim = grid;
  blockDim = block;
  block_barrier().reset(static_cast<int>(block.x));
  for (unsigned w = 0; w < (block.x + 31) / 32; ++w)
    warps()[w].barrier.reset(static_cast<int>(std::min(32u, block.x - 32 * w)));
  Barrier done;
  done.reset(static_cast<int>(block.x));
  std::vector<std::thread> threads;
  threads.reserve(block.x);
  for (unsigned t = 0; t < block.x; ++t) {
    threads.emplace_back([=, &done] {
      threadIdx = EmuDim3{t, 0, 0};
      for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
          for (unsigned x = 0; x < grid.x; ++x) {
            blockIdx = EmuDim3{x, y, z};
            kernel(args...);
            done.arrive_and_wait();
          }
    });
  }
  for (auto& th : threads) th.join();
}

}  // namespace emu
}  // namespace genint_fast
