#pragma once

// Lines up forked processes so that what they do next races: each child
// arrives at a numbered step and waits for a step to be reached; the block
// lives in anonymous shared memory made before the fork. Waits spin (with
// sched_yield) on shared atomics and give up at a deadline; nothing sleeps.

#include "ipc_names.hpp"

#include <atomic>
#include <chrono>
#include <new>
#include <sched.h>
#include <sys/mman.h>
#include <vector>

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

/// Forks `n` children, lets each wait until all are forked and then run
/// `body(k)` (its exit status) at the same moment: steps 0 and 1 of `gate`
/// are used for that, so `body` starts counting at step 2. Returns the
/// children's pids; empty if they did not all arrive in time.
template <class Body>
std::vector<pid_t> race(race_gate& gate, int n, Body body) {
  std::vector<pid_t> kids;
  for (int k = 0; k < n; ++k) {
    auto pid = fork_child([&gate, &body, k] {
      gate.arrive(0);
      return gate.wait_for(1, 1) ? body(k) : 1;
    });
    if (pid > 0)
      kids.push_back(pid);
  }
  bool all = static_cast<int>(kids.size()) == n && gate.wait_for(0, n);
  gate.arrive(1); // also releases the ones that came, if not all did
  if (!all) {
    for (auto kid : kids)
      wait_child(kid, std::chrono::seconds(10));
    kids.clear();
  }
  return kids;
}

} // namespace actorbus::ipc::testing
