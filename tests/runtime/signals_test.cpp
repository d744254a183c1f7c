#include "actorbus/runtime/signals.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <thread>

using actorbus::runtime::signal_waiter;
using namespace std::chrono_literals;

namespace {

class signal_waiter_test : public ::testing::Test {
protected:
  signal_waiter sut;
};

} // namespace

TEST_F(signal_waiter_test, sigterm_wakes_the_waiter_with_its_number) {
  std::raise(SIGTERM);
  EXPECT_EQ(sut.wait_for(5s), SIGTERM);
}

TEST_F(signal_waiter_test, sigint_wakes_the_waiter_with_its_number) {
  std::raise(SIGINT);
  EXPECT_EQ(sut.wait_for(5s), SIGINT);
}

TEST_F(signal_waiter_test, no_signal_means_a_timeout_not_a_hang) {
  EXPECT_EQ(sut.wait_for(10ms), std::nullopt);
}

TEST_F(signal_waiter_test, cancel_wakes_a_waiter_on_another_thread) {
  auto start = std::chrono::steady_clock::now();
  std::thread t{[this] { sut.cancel(); }};
  EXPECT_EQ(sut.wait_for(30s), std::nullopt);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  t.join();
}

TEST_F(signal_waiter_test, a_second_waiter_at_the_same_time_is_refused) {
  EXPECT_THROW(signal_waiter{}, std::logic_error);
}
