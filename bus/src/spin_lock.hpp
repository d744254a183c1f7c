#pragma once

// A lock for very short critical sections shared by two cores.

#include <atomic>
#include <thread>

namespace actorbus::bus::detail {

/// A lock for critical sections of a few dozen instructions that a
/// publisher and a courier on different cores take: contention costs a
/// short spin instead of a futex sleep and wake-up (std::mutex). After 64
/// spins a waiter yields its thread, since the holder may be descheduled.
/// Meets the Lockable requirements (std::unique_lock,
/// std::condition_variable_any). Not recursive.
class spin_lock {
public:
  void lock() noexcept {
    for (int spins = 0; flag_.exchange(true, std::memory_order_acquire);) {
      while (flag_.load(std::memory_order_relaxed))
        if (++spins > 64)
          std::this_thread::yield(); // the holder may be descheduled
    }
  }

  bool try_lock() noexcept {
    return !flag_.load(std::memory_order_relaxed) &&
           !flag_.exchange(true, std::memory_order_acquire);
  }

  void unlock() noexcept {
    flag_.store(false, std::memory_order_release);
  }

private:
  std::atomic<bool> flag_{false};
};

} // namespace actorbus::bus::detail
