// A host emulator for simple CUDA kernels, for tests only (GENINT_FAST_EMULATE_CUDA): a launch
// runs the grid's blocks one after another, each block as blockDim.x std::threads that share the
// kernel's `static` (shared-memory) arrays and meet at syncthreads(). It checks a kernel's
// indexing, masking and block-level reductions on a machine without a GPU; it says nothing about
// the memory model, warp-level primitives (not supported) or speed.
#pragma once

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

struct EmuDim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline thread_local EmuDim3 threadIdx;
inline EmuDim3 blockIdx, gridDim, blockDim;

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

// Runs kernel(args...) over grid x block, block by block.
template <typename Kernel, typename... Args>
void launch(EmuDim3 grid, EmuDim3 block, Kernel kernel, Args... args) {
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = EmuDim3{x, y, z};
        block_barrier().reset(static_cast<int>(block.x));
        std::vector<std::thread> threads;
        threads.reserve(block.x);
        for (unsigned t = 0; t < block.x; ++t) {
          threads.emplace_back([=] {
            threadIdx = EmuDim3{t, 0, 0};
            kernel(args...);
          });
        }
        for (auto& th : threads) th.join();
      }
}

}  // namespace emu
}  // namespace genint_fast
