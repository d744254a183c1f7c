#include "actorbus/actors/async_queue.hpp"

#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "deterministic_fixture.hpp"

#include <caf/event_based_actor.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

using namespace actorbus::actors;
using namespace std::chrono_literals;

namespace {

constexpr auto long_wait = caf::timespan{30s};

class async_queue_test : public actorbus::test::deterministic_fixture {
protected:
  void make(std::size_t capacity,
            actorbus::runtime::overload_policy on_full =
                actorbus::runtime::overload_policy::block) {
    sut = std::make_unique<async_queue<std::string>>(capacity, on_full);
  }

  /// Spawns an actor on the deterministic system that gets one item.
  void spawn_getter(caf::timespan timeout,
                    std::optional<caf::expected<std::string>>& got) {
    // The timeout is a spawn argument: CAF 0.17 trips UBSan on function
    // actors spawned without arguments.
    sys.spawn(
        [this, &got](caf::event_based_actor* self, caf::timespan timeout) {
          sut->async_get(self, timeout, [&got](caf::expected<std::string> x) {
            got.emplace(std::move(x));
          });
        },
        timeout);
  }

  std::unique_ptr<async_queue<std::string>> sut;
};

} // namespace

TEST_F(async_queue_test, items_come_out_in_the_order_they_went_in) {
  make(0);
  for (auto x : {"a", "b", "c"})
    ASSERT_FALSE(sut->put(x, 1s));
  EXPECT_EQ(sut->size(), 3u);
  EXPECT_EQ(*sut->get(1s), "a");
  EXPECT_EQ(*sut->get(1s), "b");
  EXPECT_EQ(*sut->get(1s), "c");
}

TEST_F(async_queue_test,
       put_waits_while_full_and_a_timed_out_put_keeps_its_item) {
  make(1);
  ASSERT_FALSE(sut->put("first", 1s));
  std::string second = "second";
  auto err = sut->put(std::move(second), 10ms);
  EXPECT_TRUE(err == errc::timeout);
  EXPECT_EQ(second, "second") << "a failed put must not take the item";
  EXPECT_TRUE(sut->try_put("x") == errc::full) << "try_put refuses at once";
  // A waiting put completes as soon as a get makes room.
  auto waiting = std::async(std::launch::async, [&] {
    return sut->put(std::move(second), long_wait);
  });
  EXPECT_EQ(*sut->get(1s), "first");
  EXPECT_FALSE(waiting.get());
  EXPECT_EQ(*sut->get(1s), "second");
}

TEST_F(async_queue_test,
       get_waits_for_an_item_and_times_out_on_an_empty_queue) {
  make(4);
  auto empty = sut->get(10ms);
  ASSERT_FALSE(empty);
  EXPECT_TRUE(empty.error() == errc::timeout);
  EXPECT_FALSE(sut->try_get());
  auto waiting =
      std::async(std::launch::async, [&] { return sut->get(long_wait); });
  ASSERT_FALSE(sut->put("late", 1s));
  auto x = waiting.get();
  ASSERT_TRUE(x);
  EXPECT_EQ(*x, "late");
}

TEST_F(async_queue_test, join_waits_until_every_item_is_marked_done) {
  make(0);
  for (auto x : {"a", "b", "c"})
    ASSERT_FALSE(sut->put(x, 1s));
  EXPECT_TRUE(sut->join(1ms) == errc::timeout);
  auto joined =
      std::async(std::launch::async, [&] { return sut->join(long_wait); });
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(sut->get(1s));
    ASSERT_FALSE(sut->task_done());
  }
  EXPECT_FALSE(joined.get());
  EXPECT_EQ(sut->unfinished(), 0u);
  EXPECT_TRUE(sut->task_done() == errc::no_unfinished_task);
}

TEST_F(async_queue_test,
       a_closed_queue_refuses_puts_and_drains_before_failing_gets) {
  make(0);
  ASSERT_FALSE(sut->put("a", 1s));
  auto waiting_getter_of_empty = std::make_unique<async_queue<std::string>>(1);
  auto blocked = std::async(std::launch::async, [&] {
    return waiting_getter_of_empty->get(long_wait);
  });
  waiting_getter_of_empty->close();
  auto woken = blocked.get();
  ASSERT_FALSE(woken);
  EXPECT_TRUE(woken.error() == errc::closed);
  sut->close();
  EXPECT_TRUE(sut->closed());
  EXPECT_TRUE(sut->put("b", 1s) == errc::closed);
  EXPECT_EQ(*sut->get(1s), "a");
  auto end = sut->get(1s);
  ASSERT_FALSE(end);
  EXPECT_TRUE(end.error() == errc::closed);
}

TEST_F(async_queue_test, many_producer_and_consumer_threads_lose_nothing) {
  make(64);
  constexpr int producers = 4;
  constexpr int per_producer = 25'000;
  std::atomic<long> sum{0};
  std::atomic<int> count{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p)
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i)
        ASSERT_FALSE(sut->put(std::to_string(p * per_producer + i), long_wait));
    });
  for (int c = 0; c < 4; ++c)
    threads.emplace_back([&] {
      for (;;) {
        auto x = sut->get(long_wait);
        if (!x)
          return; // closed and drained
        sum += std::stol(*x);
        ++count;
        ASSERT_FALSE(sut->task_done());
      }
    });
  for (int p = 0; p < producers; ++p)
    threads[p].join();
  ASSERT_FALSE(sut->join(long_wait));
  sut->close();
  for (auto& t : threads)
    if (t.joinable())
      t.join();
  constexpr long n = producers * per_producer;
  EXPECT_EQ(count.load(), n);
  EXPECT_EQ(sum.load(), n * (n - 1) / 2);
}

TEST_F(async_queue_test, an_actor_waiting_to_get_receives_the_next_put) {
  make(4);
  std::optional<caf::expected<std::string>> got;
  spawn_getter(caf::timespan{5s}, got);
  run();
  EXPECT_FALSE(got) << "nothing to get yet";
  ASSERT_FALSE(sut->put("hello", 1s));
  run();
  ASSERT_TRUE(got);
  ASSERT_TRUE(*got);
  EXPECT_EQ(**got, "hello");
  EXPECT_EQ(sut->size(), 0u);
}

TEST_F(async_queue_test, an_actor_get_times_out_on_the_actor_clock) {
  make(4);
  std::optional<caf::expected<std::string>> got;
  spawn_getter(caf::timespan{5s}, got);
  run();
  run_after(caf::timespan{4s});
  EXPECT_FALSE(got);
  run_after(caf::timespan{1s});
  ASSERT_TRUE(got);
  ASSERT_FALSE(*got);
  EXPECT_TRUE(got->error() == errc::timeout);
  // The timed-out wait does not swallow a later item.
  ASSERT_FALSE(sut->put("kept", 1s));
  run();
  EXPECT_EQ(sut->size(), 1u);
}

TEST_F(async_queue_test, an_actor_put_waits_for_room_or_hands_the_item_back) {
  make(1);
  ASSERT_FALSE(sut->put("first", 1s));
  std::vector<std::string> log;
  auto putter = [&](std::string item, caf::timespan timeout) {
    sys.spawn(
        [&, timeout](caf::event_based_actor* self, std::string x) {
          sut->async_put(self, std::move(x), timeout,
                         [&](caf::error err, std::optional<std::string> back) {
                           log.push_back(err ? "failed, kept " +
                                                   back.value_or("?")
                                             : "queued");
                         });
        },
        item);
  };
  putter("second", caf::timespan{10s});
  putter("third", caf::timespan{2s});
  run();
  EXPECT_TRUE(log.empty());
  run_after(caf::timespan{2s});
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0], "failed, kept third");
  EXPECT_EQ(*sut->get(1s), "first");
  run();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1], "queued");
  EXPECT_EQ(*sut->get(1s), "second");
}

TEST_F(async_queue_test, closing_wakes_waiting_actors_with_closed) {
  make(1);
  std::optional<caf::expected<std::string>> got;
  spawn_getter(caf::timespan{10s}, got);
  run();
  sut->close();
  run();
  ASSERT_TRUE(got);
  ASSERT_FALSE(*got);
  EXPECT_TRUE(got->error() == errc::closed);
}

TEST_F(async_queue_test, producer_actors_and_consumer_threads_lose_nothing) {
  make(16);
  actorbus::runtime::runtime rt;
  constexpr int producers = 3;
  constexpr int per_producer = 2'000;
  std::atomic<int> failures{0};
  for (int p = 0; p < producers; ++p) {
    auto started = rt.spawn(
        [&](caf::event_based_actor* self, int p) {
          // Each put waits for the previous one: a loop of continuations.
          // The loop holds itself weakly; each pending put holds it strongly.
          auto next = std::make_shared<std::function<void(int)>>();
          *next = [&, self, p, weak = std::weak_ptr{next}](int i) {
            if (i == per_producer)
              return;
            sut->async_put(self, std::to_string(p * per_producer + i),
                           caf::timespan{30s},
                           [&, loop = weak.lock(),
                            i](caf::error err, std::optional<std::string>) {
                             if (err)
                               ++failures;
                             (*loop)(i + 1);
                           });
          };
          (*next)(0);
        },
        p);
    ASSERT_TRUE(started);
  }
  long sum = 0;
  int count = 0;
  while (count < producers * per_producer) {
    auto x = sut->get(long_wait);
    ASSERT_TRUE(x);
    sum += std::stol(*x);
    ++count;
  }
  constexpr long n = producers * per_producer;
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(sum, n * (n - 1) / 2);
  EXPECT_FALSE(sut->try_get());
  sut.reset(); // before the runtime: its relay lives there
}

TEST_F(async_queue_test,
       an_actor_taking_items_in_a_loop_of_continuations_drains_a_long_queue) {
  // Each get asks for the next in its continuation; with the items waiting
  // every continuation ran inside the last, and 200,000 of them overflowed
  // the stack.
  make(0);
  constexpr int n = 200'000;
  for (int i = 0; i < n; ++i)
    ASSERT_FALSE(sut->put(std::to_string(i), 1s));
  actorbus::runtime::runtime rt;
  std::promise<long> total;
  auto started = rt.spawn(
      [&](caf::event_based_actor* self, int count) {
        auto next = std::make_shared<std::function<void(int, long)>>();
        *next = [&, self, count, weak = std::weak_ptr{next}](int i, long sum) {
          if (i == count) {
            total.set_value(sum);
            return;
          }
          sut->async_get(
              self, long_wait,
              [&, i, sum, loop = weak.lock()](caf::expected<std::string> x) {
                if (!x) {
                  total.set_value(-1);
                  return;
                }
                (*loop)(i + 1, sum + std::stol(*x));
              });
        };
        (*next)(0, 0);
      },
      n);
  ASSERT_TRUE(started);
  auto f = total.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(f.get(), long{n} * (n - 1) / 2);
  EXPECT_EQ(sut->size(), 0u);
  sut.reset(); // before the runtime: its relay lives there
}

TEST_F(async_queue_test,
       an_actor_putting_items_in_a_loop_of_continuations_fills_a_roomy_queue) {
  make(0);
  constexpr int n = 200'000;
  actorbus::runtime::runtime rt;
  std::promise<int> failures;
  auto started = rt.spawn(
      [&](caf::event_based_actor* self, int count) {
        auto next = std::make_shared<std::function<void(int, int)>>();
        *next = [&, self, count, weak = std::weak_ptr{next}](int i, int bad) {
          if (i == count) {
            failures.set_value(bad);
            return;
          }
          sut->async_put(self, std::to_string(i), long_wait,
                         [i, bad, loop = weak.lock()](
                             caf::error err, std::optional<std::string>) {
                           (*loop)(i + 1, bad + (err ? 1 : 0));
                         });
        };
        (*next)(0, 0);
      },
      n);
  ASSERT_TRUE(started);
  auto f = failures.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(f.get(), 0);
  EXPECT_EQ(sut->size(), static_cast<std::size_t>(n));
  EXPECT_EQ(*sut->get(1s), "0");
  sut.reset();
}

TEST_F(async_queue_test, a_full_queue_under_fail_refuses_a_put_at_once) {
  make(1, actorbus::runtime::overload_policy::fail);
  ASSERT_FALSE(sut->put("first", 1s));
  std::string second = "second";
  auto err = sut->put(std::move(second), long_wait);
  EXPECT_TRUE(err == errc::full);
  EXPECT_EQ(actorbus::runtime::describe(err),
            "actors.full: async_queue.put: the queue is full");
  EXPECT_EQ(second, "second") << "a refused put must not take the item";
  std::optional<std::string> back;
  caf::error async_err;
  sys.spawn(
      [&](caf::event_based_actor* self, std::string x) {
        sut->async_put(self, std::move(x), long_wait,
                       [&](caf::error e, std::optional<std::string> item) {
                         async_err = std::move(e);
                         back = std::move(item);
                       });
      },
      std::string{"third"});
  run();
  EXPECT_TRUE(async_err == errc::full) << "an actor's put is refused too";
  EXPECT_EQ(back, "third");
  EXPECT_EQ(sut->size(), 1u);
}

TEST_F(async_queue_test, a_full_queue_under_drop_newest_discards_the_new_item) {
  make(2, actorbus::runtime::overload_policy::drop_newest);
  for (auto x : {"a", "b", "c", "d"})
    EXPECT_FALSE(sut->put(x, long_wait)) << "a dropping put succeeds";
  EXPECT_EQ(sut->dropped(), 2u);
  EXPECT_EQ(sut->unfinished(), 2u) << "a dropped item needs no task_done";
  EXPECT_EQ(*sut->get(1s), "a");
  EXPECT_EQ(*sut->get(1s), "b");
}

TEST_F(async_queue_test, a_full_queue_under_drop_oldest_keeps_the_newest) {
  make(2, actorbus::runtime::overload_policy::drop_oldest);
  for (auto x : {"a", "b", "c", "d"})
    EXPECT_FALSE(sut->try_put(x)) << "a dropping put succeeds";
  std::optional<caf::error> async_err;
  sys.spawn(
      [&](caf::event_based_actor* self, std::string x) {
        sut->async_put(self, std::move(x), long_wait,
                       [&](caf::error e, std::optional<std::string>) {
                         async_err = std::move(e);
                       });
      },
      std::string{"e"});
  run();
  ASSERT_TRUE(async_err);
  EXPECT_FALSE(*async_err);
  EXPECT_EQ(sut->dropped(), 3u);
  EXPECT_EQ(sut->unfinished(), 2u);
  EXPECT_EQ(*sut->get(1s), "d");
  EXPECT_EQ(*sut->get(1s), "e");
  ASSERT_FALSE(sut->task_done());
  ASSERT_FALSE(sut->task_done());
  EXPECT_FALSE(sut->join(1s)) << "dropped items do not hold up join";
}
