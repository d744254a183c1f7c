#include "actorbus/actors/worker_pool.hpp"

#include "actorbus/runtime/call.hpp"
#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "gate.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <vector>

using namespace actorbus::actors;
using namespace std::chrono_literals;

namespace {

constexpr auto long_wait = caf::timespan{30s};

using actorbus::test::gate;

class worker_pool_test : public ::testing::Test {
protected:
  void start(pool_config cfg) {
    sut.emplace(sys, cfg);
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::optional<worker_pool> sut;
};

TEST_F(worker_pool_test, a_submitted_task_yields_its_value_to_a_plain_thread) {
  start({.workers = 2});
  auto f = sut->submit([](int x, int y) { return x * y; }, 6, 7);
  auto r = f.get(long_wait);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 42);
}

TEST_F(worker_pool_test, a_task_error_is_its_result_and_void_tasks_yield_unit) {
  start({.workers = 2});
  std::atomic<int> ran{0};
  auto v = sut->submit([&] { ++ran; });
  auto e = sut->submit([]() -> caf::expected<int> {
    return caf::make_error(caf::sec::invalid_argument);
  });
  EXPECT_TRUE(v.get(long_wait));
  EXPECT_EQ(ran.load(), 1);
  EXPECT_EQ(e.get(long_wait).error(), caf::sec::invalid_argument);
  EXPECT_EQ(sut->stats().crashes, 0u) << "an error value is not a crash";
}

TEST_F(worker_pool_test,
       map_returns_results_in_input_order_with_errors_in_place) {
  start({.workers = 3});
  std::vector<int> xs(1000);
  std::iota(xs.begin(), xs.end(), 0);
  auto fs = sut->map(
      [](int x) -> caf::expected<int> {
        if (x == 500)
          return caf::make_error(caf::sec::invalid_argument);
        if (x == 700)
          throw std::runtime_error("bad seven hundred");
        return x * 2;
      },
      xs);
  ASSERT_EQ(fs.size(), xs.size());
  for (int i = 0; i < 1000; ++i) {
    auto r = fs[i].get(long_wait);
    if (i == 500 || i == 700) {
      EXPECT_FALSE(r) << "element " << i;
    } else {
      ASSERT_TRUE(r) << "element " << i;
      EXPECT_EQ(*r, i * 2);
    }
  }
  EXPECT_EQ(fs[700].get(long_wait).error(), caf::sec::runtime_error);
}

TEST_F(worker_pool_test, as_completed_hands_out_results_in_completion_order) {
  start({.workers = 2});
  gate g;
  std::vector<task_future<int>> fs;
  fs.push_back(sut->submit([&g] { return g.pass() ? 0 : -1; }));
  fs.push_back(sut->submit([] { return 1; }));
  auto sut_order = as_completed(fs);
  auto first = sut_order.next(long_wait);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->first, 1u) << "the quick task completes first";
  g.open();
  auto second = sut_order.next(long_wait);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->first, 0u);
  EXPECT_EQ(*second->second, 0);
  EXPECT_FALSE(sut_order.next(1ms)) << "every result was handed out";
}

TEST_F(worker_pool_test, a_slow_task_does_not_hold_up_work_queued_behind_it) {
  start({.workers = 2});
  gate g;
  auto slow = sut->submit([&g] { return g.pass(); });
  std::vector<task_future<int>> quick;
  for (int i = 0; i < 200; ++i)
    quick.push_back(sut->submit([i] { return i; }));
  for (int i = 0; i < 200; ++i)
    ASSERT_EQ(*quick[i].get(long_wait), i);
  EXPECT_FALSE(slow.ready()) << "all quick tasks ran while the slow one waits";
  g.open();
  EXPECT_TRUE(*slow.get(long_wait));
}

TEST_F(worker_pool_test,
       ten_thousand_tasks_with_one_percent_crashing_all_complete) {
  start({.workers = 4, .on_crash = crash_policy::fail});
  std::vector<task_future<int>> fs;
  for (int i = 0; i < 10000; ++i)
    fs.push_back(sut->submit([i] {
      if (i % 100 == 99)
        throw std::runtime_error("crash");
      return i;
    }));
  int values = 0;
  int errors = 0;
  for (int i = 0; i < 10000; ++i) {
    auto r = fs[i].get(long_wait);
    ASSERT_TRUE(fs[i].ready()) << "task " << i << " never completed";
    if (r) {
      EXPECT_EQ(*r, i);
      ++values;
    } else {
      EXPECT_EQ(r.error(), caf::sec::runtime_error);
      EXPECT_EQ(i % 100, 99);
      ++errors;
    }
  }
  EXPECT_EQ(values, 9900);
  EXPECT_EQ(errors, 100);
  EXPECT_TRUE(sut->wait_for_workers(4, long_wait));
  auto st = sut->stats();
  EXPECT_EQ(st.crashes, 100u);
  EXPECT_EQ(st.replaced, 100u);
  EXPECT_EQ(st.workers, 4u);
}

TEST_F(worker_pool_test, a_crashed_task_is_retried_on_a_new_worker_by_policy) {
  start(
      {.workers = 4, .on_crash = crash_policy::retry, .max_task_attempts = 2});
  std::vector<std::atomic<int>> runs(10000);
  std::vector<task_future<int>> fs;
  for (int i = 0; i < 10000; ++i)
    fs.push_back(sut->submit([i, &runs] {
      // 1% crash on their first run only.
      if (runs[i]++ == 0 && i % 100 == 0)
        throw std::runtime_error("first run crashes");
      return i;
    }));
  for (int i = 0; i < 10000; ++i) {
    auto r = fs[i].get(long_wait);
    ASSERT_TRUE(r) << "task " << i;
    EXPECT_EQ(*r, i);
  }
  EXPECT_TRUE(sut->wait_for_workers(4, long_wait));
  auto st = sut->stats();
  EXPECT_EQ(st.crashes, 100u);
  EXPECT_EQ(st.retried, 100u);
  EXPECT_EQ(runs[0].load(), 2);
  EXPECT_EQ(runs[1].load(), 1);
}

TEST_F(worker_pool_test, a_task_that_always_crashes_fails_after_its_attempts) {
  start(
      {.workers = 2, .on_crash = crash_policy::retry, .max_task_attempts = 3});
  std::atomic<int> runs{0};
  auto f = sut->submit([&runs]() -> int {
    ++runs;
    throw std::runtime_error("always");
  });
  EXPECT_EQ(f.get(long_wait).error(), caf::sec::runtime_error);
  EXPECT_EQ(runs.load(), 3);
  EXPECT_TRUE(sut->wait_for_workers(2, long_wait));
}

TEST_F(worker_pool_test, a_full_queue_rejects_by_policy_and_loses_nothing) {
  start({.workers = 1,
         .queue_capacity = 1,
         .on_full = actorbus::runtime::overload_policy::fail});
  gate g;
  std::promise<void> started;
  auto busy = sut->submit([&] {
    started.set_value();
    return g.pass();
  });
  ASSERT_EQ(started.get_future().wait_for(30s), std::future_status::ready);
  auto queued = sut->submit([] { return 1; });
  auto refused = sut->submit([] { return 2; });
  EXPECT_EQ(refused.get(long_wait).error(),
            caf::sec::unavailable_or_would_block);
  g.open();
  EXPECT_EQ(*queued.get(long_wait), 1);
  EXPECT_TRUE(*busy.get(long_wait));
}

TEST_F(worker_pool_test, a_blocked_submit_gives_up_after_its_timeout) {
  start({.workers = 1,
         .queue_capacity = 1,
         .on_full = actorbus::runtime::overload_policy::block,
         .block_timeout = 20ms});
  gate g;
  std::promise<void> started;
  auto busy = sut->submit([&] {
    started.set_value();
    return g.pass();
  });
  ASSERT_EQ(started.get_future().wait_for(30s), std::future_status::ready);
  auto queued = sut->submit([] { return 1; });
  auto late = sut->submit([] { return 2; });
  EXPECT_EQ(late.get(long_wait).error(), caf::sec::request_timeout);
  g.open();
  EXPECT_EQ(*queued.get(long_wait), 1);
}

TEST_F(worker_pool_test, shutdown_can_cancel_pending_tasks) {
  start({.workers = 1});
  gate g;
  std::promise<void> started;
  auto busy = sut->submit([&] {
    started.set_value();
    return g.pass();
  });
  ASSERT_EQ(started.get_future().wait_for(30s), std::future_status::ready);
  std::vector<task_future<int>> pending;
  for (int i = 0; i < 10; ++i)
    pending.push_back(sut->submit([i] { return i; }));
  EXPECT_FALSE(sut->shutdown({.wait = false, .cancel_pending = true}));
  g.open();
  EXPECT_FALSE(sut->shutdown({.wait = true}));
  EXPECT_TRUE(*busy.get(long_wait)) << "the running task finishes";
  for (auto& f : pending)
    EXPECT_EQ(f.get(long_wait).error(), caf::sec::request_receiver_down);
  auto after = sut->submit([] { return 0; });
  EXPECT_EQ(after.get(long_wait).error(), caf::sec::request_receiver_down);
  EXPECT_EQ(sut->stats().workers, 0u);
}

TEST_F(worker_pool_test, shutdown_with_wait_runs_every_queued_task) {
  start({.workers = 2});
  std::atomic<int> ran{0};
  std::vector<task_future<caf::unit_t>> fs;
  for (int i = 0; i < 500; ++i)
    fs.push_back(sut->submit([&ran] { ++ran; }));
  EXPECT_FALSE(sut->shutdown({.wait = true}));
  EXPECT_EQ(ran.load(), 500);
  for (auto& f : fs)
    EXPECT_TRUE(f.ready());
}

TEST_F(worker_pool_test, the_pool_grows_and_shrinks_at_runtime) {
  start({.workers = 2});
  EXPECT_TRUE(sut->wait_for_workers(2, long_wait));
  EXPECT_FALSE(sut->resize(5));
  EXPECT_TRUE(sut->wait_for_workers(5, long_wait));
  EXPECT_FALSE(sut->resize(1));
  EXPECT_TRUE(sut->wait_for_workers(1, long_wait));
  EXPECT_EQ(*sut->submit([] { return 3; }).get(long_wait), 3);
  EXPECT_EQ(sut->resize(0), caf::sec::invalid_argument);
}

TEST_F(worker_pool_test, a_killed_worker_is_replaced) {
  start({.workers = 3});
  EXPECT_TRUE(sut->wait_for_workers(3, long_wait));
  ASSERT_TRUE(sut->kill_one_worker());
  // The replacement may already be there; wait for the count to settle.
  for (int i = 0; i < 1000 && sut->stats().replaced == 0; ++i)
    sut->wait_for_workers(4, 1ms);
  EXPECT_EQ(sut->stats().replaced, 1u);
  EXPECT_TRUE(sut->wait_for_workers(3, long_wait));
  EXPECT_EQ(*sut->submit([] { return 9; }).get(long_wait), 9);
}

TEST_F(worker_pool_test, an_actor_answers_a_request_with_a_task_result) {
  start({.workers = 2});
  auto& pool = *sut;
  auto squarer = sys.spawn(
      [&pool](caf::event_based_actor* self, int power) {
        return caf::behavior{[self, &pool, power](int x) {
          return pool.submit([x, power] { return power == 2 ? x * x : x; })
              .respond(self);
        }};
      },
      2);
  auto r = actorbus::runtime::call<int>(sys, squarer, long_wait, 12);
  ASSERT_TRUE(r) << sys.render(r.error());
  EXPECT_EQ(*r, 144);
  caf::anon_send_exit(squarer, caf::exit_reason::user_shutdown);
}

TEST_F(worker_pool_test,
       a_runtime_shutdown_runs_the_queue_and_stops_a_pool_that_outlives_it) {
  std::unique_ptr<worker_pool> outliving;
  actorbus::runtime::runtime rt;
  auto made = worker_pool::make(rt, {.workers = 2});
  ASSERT_TRUE(made);
  outliving = std::move(*made);
  EXPECT_EQ(rt.tracked(), 2u) << "the runtime tracks the workers";
  std::vector<task_future<int>> queued;
  for (int i = 0; i < 1000; ++i)
    queued.push_back(outliving->submit([i] { return i; }));
  // The runtime's owner thread shuts it down while tasks are queued.
  auto report = rt.shutdown(std::chrono::seconds(30));
  EXPECT_EQ(report.abandoned, 0u) << "the runtime joined its actor system";
  EXPECT_EQ(report.killed, 0u);
  for (int i = 0; i < 1000; ++i)
    EXPECT_EQ(*queued[i].get(long_wait), i) << "queued work ran";
  EXPECT_EQ(outliving->stats().workers, 0u);
  EXPECT_EQ(outliving->submit([] { return 0; }).get(long_wait).error(),
            caf::sec::request_receiver_down);
  outliving.reset(); // after the runtime's shutdown: returns at once
}

TEST_F(worker_pool_test, bad_settings_name_the_field) {
  auto batch = worker_pool::make(sys, {}, {.batch = 0});
  ASSERT_FALSE(batch);
  EXPECT_EQ(batch.error(), caf::sec::invalid_argument);
  EXPECT_EQ(actorbus::runtime::describe(batch.error()),
            "caf.invalid_argument: worker_pool.batch: must be at least 1");
  try {
    worker_pool bad{sys, {.workers = 0}};
    FAIL() << "a pool without workers was made";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "worker_pool.workers: must be at least 1");
  }
}

TEST_F(worker_pool_test, an_invalid_configuration_is_refused) {
  auto p = worker_pool::make(sys, {.workers = 0});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), caf::sec::invalid_argument);
}

} // namespace
