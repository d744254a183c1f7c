#include "actorbus/actors/handler_pool.hpp"

#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "gate.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace actorbus::actors;
using namespace std::chrono_literals;

namespace {

constexpr auto long_wait = caf::timespan{30s};

using actorbus::test::gate;

/// What the test's workers do with a request `x`.
struct worker_script {
  /// Requests equal to this wait for the gate (detached workers only).
  std::optional<int> slow;
  gate g;
  /// Requests equal to this throw, as long as `crashes_left` > 0.
  std::optional<int> crash_on;
  std::atomic<int> crashes_left{0};
  /// Requests x with x % 100 == 99 always throw.
  bool crash_every_hundredth = false;
};

caf::behavior scripted_worker(caf::event_based_actor*,
                              std::shared_ptr<worker_script> s) {
  return {
      [s](int x) -> caf::result<int> {
        if (s->slow && x == *s->slow && !s->g.pass())
          return caf::make_error(caf::sec::request_timeout);
        if (s->crash_on && x == *s->crash_on && s->crashes_left-- > 0)
          throw std::runtime_error("worker crashed");
        if (s->crash_every_hundredth && x % 100 == 99)
          throw std::runtime_error("worker crashed");
        if (x < 0)
          return caf::make_error(caf::sec::invalid_argument);
        return x * 2;
      },
  };
}

class handler_pool_test : public ::testing::Test {
protected:
  void start(pool_config pc, worker_threads threads = worker_threads::own) {
    auto s = script;
    sut.emplace(
        sys,
        [s](caf::event_based_actor* self) { return scripted_worker(self, s); },
        pc, threads);
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::shared_ptr<worker_script> script = std::make_shared<worker_script>();
  std::optional<handler_pool> sut;
};

TEST_F(handler_pool_test, a_plain_thread_gets_the_reply_of_a_worker) {
  start({.workers = 2});
  auto r = sut->call<int>(long_wait, 21);
  ASSERT_TRUE(r) << caf::to_string(r.error());
  EXPECT_EQ(*r, 42);
  auto e = sut->call<int>(long_wait, -1);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), caf::sec::invalid_argument) << "an error reply is kept";
  EXPECT_EQ(sut->stats().crashes, 0u);
}

TEST_F(handler_pool_test, an_actor_gets_the_reply_of_a_worker) {
  start({.workers = 2});
  caf::scoped_actor self{sys};
  std::optional<int> got;
  self->request(sut->handle(), long_wait, 5)
      .receive([&](int x) { got = x; },
               [&](caf::error& err) { FAIL() << caf::to_string(err); });
  EXPECT_EQ(got, 10);
}

TEST_F(handler_pool_test,
       a_request_whose_worker_crashes_is_retried_and_the_worker_replaced) {
  script->crash_on = 7;
  script->crashes_left = 1;
  start({.workers = 3, .on_crash = crash_policy::retry});
  auto r = sut->call<int>(long_wait, 7);
  ASSERT_TRUE(r) << caf::to_string(r.error());
  EXPECT_EQ(*r, 14) << "the second run on another worker succeeded";
  EXPECT_TRUE(sut->wait_for_workers(3, long_wait));
  auto st = sut->stats();
  EXPECT_EQ(st.crashes, 1u);
  EXPECT_EQ(st.retried, 1u);
  EXPECT_EQ(st.replaced, 1u);
}

TEST_F(handler_pool_test,
       workers_on_the_shared_scheduler_are_replaced_after_a_crash_too) {
  script->crash_on = 3;
  script->crashes_left = 1;
  start({.workers = 2, .on_crash = crash_policy::retry},
        worker_threads::shared);
  auto r = sut->call<int>(long_wait, 3);
  ASSERT_TRUE(r) << caf::to_string(r.error());
  EXPECT_EQ(*r, 6);
  EXPECT_TRUE(sut->wait_for_workers(2, long_wait));
  EXPECT_EQ(sut->stats().crashes, 1u);
}

TEST_F(handler_pool_test,
       a_request_crashing_every_attempt_fails_after_max_attempts) {
  script->crash_on = 7;
  script->crashes_left = 100;
  start(
      {.workers = 2, .on_crash = crash_policy::retry, .max_task_attempts = 3});
  auto r = sut->call<int>(long_wait, 7);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), caf::sec::runtime_error);
  EXPECT_EQ(script->crashes_left.load(), 97) << "exactly three runs";
  EXPECT_TRUE(sut->wait_for_workers(2, long_wait));
  EXPECT_EQ(*sut->call<int>(long_wait, 1), 2) << "the pool still serves";
}

TEST_F(handler_pool_test,
       a_thousand_requests_with_one_percent_crashing_all_get_an_answer) {
  script->crash_every_hundredth = true;
  start({.workers = 4, .on_crash = crash_policy::fail});
  std::vector<std::future<std::pair<int, int>>> clients;
  for (int t = 0; t < 4; ++t)
    clients.push_back(std::async(std::launch::async, [this, t] {
      int values = 0;
      int errors = 0;
      for (int i = t * 250; i < (t + 1) * 250; ++i) {
        auto r = sut->call<int>(long_wait, i);
        if (r && *r == i * 2)
          ++values;
        else if (!r && r.error() == caf::sec::runtime_error)
          ++errors;
      }
      return std::make_pair(values, errors);
    }));
  int values = 0;
  int errors = 0;
  for (auto& c : clients) {
    auto [v, e] = c.get();
    values += v;
    errors += e;
  }
  EXPECT_EQ(values, 990);
  EXPECT_EQ(errors, 10);
  EXPECT_TRUE(sut->wait_for_workers(4, long_wait)) << "back to 4 workers";
  EXPECT_EQ(sut->stats().crashes, 10u);
}

TEST_F(handler_pool_test, a_slow_request_does_not_hold_up_requests_behind_it) {
  script->slow = 0;
  start({.workers = 2});
  caf::scoped_actor self{sys};
  // The pool hands a request to a worker as it arrives: 0 holds one now.
  auto slow = self->request(sut->handle(), long_wait, 0);
  for (int i = 1; i <= 50; ++i) {
    auto r = sut->call<int>(long_wait, i);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, 2 * i);
  }
  EXPECT_EQ(sut->stats().completed, 50u)
      << "every quick request was answered while the slow one waits";
  script->g.open();
  slow.receive([](int x) { EXPECT_EQ(x, 0); },
               [&](caf::error& err) { FAIL() << caf::to_string(err); });
}

TEST_F(handler_pool_test, resizing_grows_and_shrinks_the_workers) {
  start({.workers = 2});
  ASSERT_FALSE(sut->resize(5));
  EXPECT_TRUE(sut->wait_for_workers(5, long_wait));
  ASSERT_FALSE(sut->resize(1));
  EXPECT_TRUE(sut->wait_for_workers(1, long_wait));
  EXPECT_EQ(*sut->call<int>(long_wait, 4), 8);
  EXPECT_EQ(sut->stats().crashes, 0u) << "retired workers are no crashes";
  EXPECT_EQ(sut->resize(0), caf::sec::invalid_argument);
}

TEST_F(handler_pool_test, a_full_queue_rejects_a_request_at_once) {
  script->slow = 0;
  start({.workers = 1,
         .queue_capacity = 1,
         .on_full = actorbus::runtime::overload_policy::fail});
  caf::scoped_actor self{sys};
  // Requests reach the pool in order: 0 holds the worker, 1 waits.
  auto held = self->request(sut->handle(), long_wait, 0);
  auto queued = self->request(sut->handle(), long_wait, 1);
  auto r = sut->call<int>(long_wait, 2);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), caf::sec::unavailable_or_would_block);
  script->g.open();
  std::vector<int> got;
  held.receive([&](int x) { got.push_back(x); },
               [&](caf::error& err) { FAIL() << caf::to_string(err); });
  queued.receive([&](int x) { got.push_back(x); },
                 [&](caf::error& err) { FAIL() << caf::to_string(err); });
  EXPECT_EQ(got, (std::vector<int>{0, 2}));
}

TEST_F(handler_pool_test, a_blocked_request_fails_when_no_room_comes_in_time) {
  script->slow = 0;
  start({.workers = 1,
         .queue_capacity = 1,
         .on_full = actorbus::runtime::overload_policy::block,
         .block_timeout = std::chrono::milliseconds(20)});
  caf::scoped_actor self{sys};
  auto held = self->request(sut->handle(), long_wait, 0);
  auto queued = self->request(sut->handle(), long_wait, 1);
  auto r = sut->call<int>(long_wait, 2);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), caf::sec::request_timeout);
  script->g.open();
  held.receive([](int x) { EXPECT_EQ(x, 0); },
               [&](caf::error& err) { FAIL() << caf::to_string(err); });
  queued.receive([](int x) { EXPECT_EQ(x, 2); },
                 [&](caf::error& err) { FAIL() << caf::to_string(err); });
}

TEST_F(handler_pool_test, shutdown_cancels_pending_requests_when_asked) {
  script->slow = 0;
  start({.workers = 1});
  caf::scoped_actor self{sys};
  auto held = self->request(sut->handle(), long_wait, 0);
  auto queued = self->request(sut->handle(), long_wait, 1);
  auto done = std::async(std::launch::async, [this] {
    return sut->shutdown({.wait = true, .cancel_pending = true});
  });
  std::optional<caf::error> cancelled;
  queued.receive([](int) { FAIL() << "a cancelled request ran"; },
                 [&](caf::error& err) { cancelled = err; });
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(*cancelled, caf::sec::request_receiver_down);
  script->g.open();
  held.receive([](int x) { EXPECT_EQ(x, 0); },
               [&](caf::error& err) { FAIL() << caf::to_string(err); });
  EXPECT_FALSE(done.get()) << "the held request finished in time";
  auto late = sut->call<int>(long_wait, 3);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error(), caf::sec::request_receiver_down);
}

TEST_F(handler_pool_test,
       a_second_shutdown_cancels_the_requests_a_first_one_left_queued) {
  script->slow = 0;
  start({.workers = 1});
  caf::scoped_actor self{sys};
  auto held = self->request(sut->handle(), long_wait, 0);
  auto queued = self->request(sut->handle(), long_wait, 1);
  // Both reached the pool: the first holds the worker, the second waits.
  ASSERT_FALSE(sut->shutdown({.wait = false}));
  auto done = std::async(std::launch::async, [this] {
    return sut->shutdown({.wait = true, .cancel_pending = true});
  });
  std::optional<caf::error> cancelled;
  queued.receive([](int) { FAIL() << "a cancelled request ran"; },
                 [&](caf::error& err) { cancelled = err; });
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(*cancelled, caf::sec::request_receiver_down);
  script->g.open();
  held.receive([](int) {}, [](caf::error&) {});
  EXPECT_FALSE(done.get());
}

TEST_F(handler_pool_test,
       a_runtime_shutdown_answers_the_queue_and_stops_a_pool_that_outlives_it) {
  std::unique_ptr<handler_pool> outliving;
  actorbus::runtime::runtime rt;
  auto s = script;
  auto made = handler_pool::make(
      rt,
      [s](caf::event_based_actor* self) { return scripted_worker(self, s); },
      {.workers = 2});
  ASSERT_TRUE(made);
  outliving = std::move(*made);
  EXPECT_EQ(rt.tracked(), 2u) << "the runtime tracks the workers";
  // The requester lives in the fixture's system, which outlives `rt`.
  caf::scoped_actor self{sys};
  std::vector<int> xs(100);
  std::iota(xs.begin(), xs.end(), 0);
  for (auto x : xs)
    self->send(outliving->handle(), x);
  auto last = self->request(outliving->handle(), long_wait, 100);
  // The runtime's owner thread shuts it down while jobs are queued.
  auto report = rt.shutdown(std::chrono::seconds(30));
  EXPECT_EQ(report.abandoned, 0u) << "the runtime joined its actor system";
  EXPECT_EQ(report.killed, 0u);
  last.receive([](int x) { EXPECT_EQ(x, 200); },
               [&](caf::error& err) { FAIL() << caf::to_string(err); });
  EXPECT_EQ(outliving->stats().completed, 101u) << "every queued job ran";
  EXPECT_EQ(outliving->stats().workers, 0u);
  outliving.reset(); // after the runtime's shutdown: returns at once
}

TEST_F(handler_pool_test, an_invalid_configuration_is_an_error_value) {
  auto none = handler_pool::make(sys, nullptr, {});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), caf::sec::invalid_argument);
  EXPECT_EQ(actorbus::runtime::describe(none.error()),
            "caf.invalid_argument: handler_pool.make_worker: must not be "
            "empty");
  auto zero = handler_pool::make(
      sys, [](caf::event_based_actor*) { return caf::behavior{}; },
      {.workers = 0});
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error(), caf::sec::invalid_argument);
}

} // namespace
