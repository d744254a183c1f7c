#include "spin_lock.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <latch>
#include <mutex>
#include <thread>
#include <vector>

// The lock that guards a subscription's queue (bus/src/spin_lock.hpp).

namespace {

using actorbus::bus::detail::spin_lock;
using namespace std::chrono_literals;

class spin_lock_test : public ::testing::Test {
protected:
  spin_lock sut;
};

TEST_F(spin_lock_test, try_lock_fails_while_the_lock_is_held) {
  ASSERT_TRUE(sut.try_lock());
  EXPECT_FALSE(sut.try_lock());
  sut.unlock();
  EXPECT_TRUE(sut.try_lock());
  sut.unlock();
}

TEST_F(spin_lock_test, a_waiting_thread_gets_the_lock_after_unlock) {
  sut.lock();
  std::promise<void> started;
  auto got = std::async(std::launch::async, [&] {
    started.set_value();
    std::lock_guard guard{sut}; // spins, then yields, until unlocked
    return true;
  });
  started.get_future().wait();
  sut.unlock();
  ASSERT_EQ(got.wait_for(60s), std::future_status::ready);
  EXPECT_TRUE(got.get());
}

TEST_F(spin_lock_test,
       increments_under_the_lock_from_several_threads_are_exact) {
  // More threads than cores: holders get descheduled while others spin.
  constexpr int threads = 4;
  constexpr std::int64_t per_thread = 200'000;
  std::int64_t counter = 0; // deliberately not atomic
  std::latch start{threads};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&] {
      start.arrive_and_wait();
      for (std::int64_t i = 0; i < per_thread; ++i) {
        std::lock_guard guard{sut};
        ++counter;
      }
    });
  for (auto& w : workers)
    w.join();
  EXPECT_EQ(counter, threads * per_thread);
}

TEST_F(spin_lock_test, a_condition_variable_any_waits_on_it) {
  std::condition_variable_any cv;
  bool ready = false;
  auto waiter = std::async(std::launch::async, [&] {
    std::unique_lock guard{sut};
    return cv.wait_for(guard, 60s, [&] { return ready; });
  });
  {
    std::unique_lock guard{sut};
    ready = true;
  }
  cv.notify_all();
  ASSERT_EQ(waiter.wait_for(60s), std::future_status::ready);
  EXPECT_TRUE(waiter.get());
}

} // namespace
