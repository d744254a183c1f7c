#include "actorbus/actors/guarded.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace actorbus::actors;
using namespace std::chrono_literals;

namespace {

constexpr auto long_wait = caf::timespan{30s};

class guarded_test : public ::testing::Test {
protected:
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
};

TEST_F(guarded_test, concurrent_increments_from_many_threads_are_all_counted) {
  counter sut{sys};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i)
        sut.increment();
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(sut.get(), 80000);
}

TEST_F(guarded_test, a_thread_reads_its_own_earlier_increments) {
  counter sut{sys, 5};
  for (int i = 0; i < 100; ++i)
    sut.increment(2);
  EXPECT_EQ(sut.add(1), 206);
  EXPECT_EQ(sut.get(), 206);
}

TEST_F(guarded_test, actors_and_threads_update_one_count) {
  counter sut{sys};
  caf::scoped_actor self{sys};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i)
        sut.increment();
    });
  int64_t last = 0;
  for (int i = 0; i < 1000; ++i)
    self->request(sut.handle(), long_wait, caf::add_atom::value, int64_t{3})
        .receive([&](int64_t now) { last = now; },
                 [&](caf::error& err) { FAIL() << to_string(err); });
  for (auto& t : threads)
    t.join();
  // Each reply is the count right after that add: at least its own adds.
  EXPECT_GE(last, 3000);
  EXPECT_EQ(sut.get(), 40000 + 3000);
  self->request(sut.handle(), long_wait, caf::get_atom::value)
      .receive([&](int64_t now) { EXPECT_EQ(now, 43000); },
               [&](caf::error& err) { FAIL() << to_string(err); });
}

TEST_F(guarded_test, a_guarded_value_applies_operations_one_at_a_time) {
  guarded<std::vector<int>> sut{sys};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i)
        ASSERT_TRUE(sut.apply(
            [t, i](std::vector<int>& v) { v.push_back(t * 1000 + i); },
            long_wait));
    });
  for (auto& t : threads)
    t.join();
  auto v = sut.get(long_wait);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->size(), 4000u);
  auto sum = sut.apply(
      [](std::vector<int>& v) {
        long s = 0;
        for (auto x : v)
          s += x;
        return s;
      },
      long_wait);
  EXPECT_EQ(*sum, (3999L * 4000L) / 2);
}

TEST_F(guarded_test, posted_operations_run_in_order_before_a_later_apply) {
  guarded<std::string> sut{sys, "a"};
  sut.post([](std::string& s) { s += "b"; });
  sut.post([](std::string& s) { s += "c"; });
  EXPECT_EQ(*sut.get(long_wait), "abc");
}

} // namespace
