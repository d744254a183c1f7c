#pragma once

// Lines up forked processes so that what they do next races: each child
// arrives at a numbered step and waits for a step to be reached; the block
// lives in anonymous shared memory made before the fork. Waits spin (with
// sched_yield) on shared atomics and give up at a deadline; nothing sleeps.

#include <atomic>
#include <chrono>
#include <new>
#include <sched.h>
#include <sys/mman.h>

namespace actorbus::ipc::testing {

class race_gate {
public:
  static constexpr int steps = 4;
  static constexpr int slots = 8;

  race_gate() {
    void* p = ::mmap(nullptr, sizeof(block), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    block_ = p == MAP_FAILED ? nullptr : new (p) block{};
  }

  race_gate(const race_gate&) = delete;
  race_gate& operator=(const race_gate&) = delete;

  ~race_gate() {
    if (block_ != nullptr)
      ::munmap(block_, sizeof(block));
  }

  bool ok() const {
    return block_ != nullptr;
  }

  /// Counts the caller in at `step`.
  void arrive(int step) {
    block_->arrived[step].fetch_add(1);
  }

  /// Waits until `n` processes arrived at `step`; false at the deadline.
  bool wait_for(int step, int n,
                std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (block_->arrived[step].load() < n) {
      if (std::chrono::steady_clock::now() >= deadline)
        return false;
      ::sched_yield();
    }
    return true;
  }

  /// A word per process for its outcome.
  std::atomic<int>& result(int i) {
    return block_->results[i];
  }

private:
  struct block {
    std::atomic<int> arrived[steps];
    std::atomic<int> results[slots];
  };

  block* block_ = nullptr;
};

} // namespace actorbus::ipc::testing
