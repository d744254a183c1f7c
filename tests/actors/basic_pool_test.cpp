#include "actorbus/actors/basic_pool.hpp"

#include "actorbus/actors/handler_pool.hpp"
#include "actorbus/actors/worker_pool.hpp"
#include "actorbus/runtime/error.hpp"

#include "gate.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>

// What both pools share, run against each: the pool core decides it once.

using namespace actorbus::actors;
using namespace std::chrono_literals;
using actorbus::runtime::overload_policy;

namespace {

constexpr auto long_wait = caf::timespan{30s};

using actorbus::test::gate;

/// The result of one item, read once it is there.
using result_getter = std::function<caf::expected<int>()>;

/// Items for a `worker_pool`: tasks.
struct worker_flavour {
  static constexpr const char* component = "worker_pool";

  caf::actor_system& sys;
  worker_pool* pool = nullptr;

  caf::expected<std::unique_ptr<basic_pool>> make(pool_config cfg) {
    auto p = worker_pool::make(sys, cfg);
    if (!p)
      return std::move(p.error());
    pool = p->get();
    return std::unique_ptr<basic_pool>{std::move(*p)};
  }

  /// Occupies a worker until `g` opens; returns once it runs.
  result_getter hold(gate& g) {
    std::promise<void> started;
    auto f = pool->submit([&g, &started] {
      started.set_value();
      return g.pass() ? 0 : -1;
    });
    started.get_future().wait_for(long_wait);
    return [f] { return f.get(long_wait); };
  }

  /// Queues an item that yields `x`.
  result_getter add(int x) {
    auto f = pool->submit([x] { return x; });
    return [f] { return f.get(long_wait); };
  }
};

/// Items for a `handler_pool`: requests to workers that answer `x` with `x`
/// (and wait for the gate on 0).
struct handler_flavour {
  static constexpr const char* component = "handler_pool";

  caf::actor_system& sys;
  handler_pool* pool = nullptr;
  std::shared_ptr<gate*> g = std::make_shared<gate*>(nullptr);

  caf::expected<std::unique_ptr<basic_pool>> make(pool_config cfg) {
    auto held = g;
    auto p = handler_pool::make(
        sys,
        [held](caf::event_based_actor*) {
          return caf::behavior{[held](int x) {
            if (x == 0 && *held && !(*held)->pass())
              return -1;
            return x;
          }};
        },
        cfg);
    if (!p)
      return std::move(p.error());
    pool = p->get();
    return std::unique_ptr<basic_pool>{std::move(*p)};
  }

  result_getter ask(int x) {
    // The pool admits a job as it is sent: once `request` returns, the job
    // is queued or held.
    auto self = std::make_shared<caf::scoped_actor>(sys);
    auto rh = std::make_shared<decltype((*self)->request(pool->handle(),
                                                         long_wait, x))>(
        (*self)->request(pool->handle(), long_wait, x));
    return [self, rh]() -> caf::expected<int> {
      caf::expected<int> out = caf::make_error(caf::sec::request_timeout);
      rh->receive([&](int y) { out = y; },
                  [&](caf::error& err) { out = std::move(err); });
      return out;
    };
  }

  result_getter hold(gate& gt) {
    *g = &gt;
    auto r = ask(0);
    // The job is with the worker once the pool shows it is not queued.
    for (int i = 0; i < 30000 && pool->stats().queued != 0; ++i)
      pool->wait_for_workers(0, 1ms);
    return r;
  }

  result_getter add(int x) {
    return ask(x);
  }
};

template <class Flavour>
class basic_pool_test : public ::testing::Test {
protected:
  void start(pool_config cfg) {
    auto p = flavour.make(cfg);
    ASSERT_TRUE(p) << actorbus::runtime::describe(p.error());
    sut = std::move(*p);
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  Flavour flavour{sys};
  std::unique_ptr<basic_pool> sut;
};

using flavours = ::testing::Types<worker_flavour, handler_flavour>;
TYPED_TEST_SUITE(basic_pool_test, flavours);

TYPED_TEST(basic_pool_test,
           a_second_shutdown_cancels_what_a_first_one_left_queued) {
  this->start({.workers = 1});
  gate g;
  auto held = this->flavour.hold(g);
  auto queued = this->flavour.add(7);
  ASSERT_FALSE(this->sut->shutdown({.wait = false}));
  EXPECT_FALSE(this->sut->shutdown({.wait = false, .cancel_pending = true}));
  auto r = queued();
  ASSERT_FALSE(r) << "a cancelled item ran";
  EXPECT_EQ(r.error(), caf::sec::request_receiver_down);
  g.open();
  EXPECT_EQ(*held(), 0) << "the held item finishes";
  EXPECT_FALSE(this->sut->shutdown({.wait = true, .timeout = long_wait}));
  EXPECT_EQ(this->sut->stats().workers, 0u);
}

TYPED_TEST(basic_pool_test,
           a_first_shutdown_without_wait_still_runs_the_queue) {
  this->start({.workers = 1});
  gate g;
  auto held = this->flavour.hold(g);
  auto queued = this->flavour.add(7);
  ASSERT_FALSE(this->sut->shutdown({.wait = false}));
  auto late = this->flavour.add(8);
  g.open();
  EXPECT_EQ(*queued(), 7);
  EXPECT_EQ(late().error(), caf::sec::request_receiver_down);
  EXPECT_FALSE(this->sut->shutdown({.wait = true, .timeout = long_wait}));
}

TYPED_TEST(basic_pool_test,
           drop_oldest_fails_the_oldest_queued_item_and_counts_it) {
  this->start({.workers = 1,
               .queue_capacity = 2,
               .on_full = overload_policy::drop_oldest});
  gate g;
  auto held = this->flavour.hold(g);
  auto oldest = this->flavour.add(1);
  auto middle = this->flavour.add(2);
  auto newest = this->flavour.add(3);
  EXPECT_EQ(oldest().error(), caf::sec::unavailable_or_would_block);
  EXPECT_EQ(this->sut->stats().dropped, 1u);
  g.open();
  EXPECT_EQ(*middle(), 2);
  EXPECT_EQ(*newest(), 3);
}

TYPED_TEST(basic_pool_test, drop_newest_fails_the_new_item_and_counts_it) {
  this->start({.workers = 1,
               .queue_capacity = 1,
               .on_full = overload_policy::drop_newest});
  gate g;
  auto held = this->flavour.hold(g);
  auto queued = this->flavour.add(1);
  auto dropped = this->flavour.add(2);
  EXPECT_EQ(dropped().error(), caf::sec::unavailable_or_would_block);
  EXPECT_EQ(this->sut->stats().dropped, 1u);
  g.open();
  EXPECT_EQ(*queued(), 1);
}

TYPED_TEST(basic_pool_test,
           bad_settings_are_refused_naming_the_component_and_field) {
  std::string component = TypeParam::component;
  auto none = this->flavour.make({.workers = 0});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), caf::sec::invalid_argument);
  EXPECT_EQ(actorbus::runtime::describe(none.error()),
            "caf.invalid_argument: " + component +
                ".workers: must be at least 1");
  auto attempts = this->flavour.make({.max_task_attempts = 0});
  ASSERT_FALSE(attempts);
  EXPECT_EQ(actorbus::runtime::describe(attempts.error()),
            "caf.invalid_argument: " + component +
                ".max_task_attempts: must be at least 1");
}

TYPED_TEST(basic_pool_test, resize_to_zero_is_refused_and_after_shutdown_too) {
  this->start({.workers = 2});
  EXPECT_TRUE(this->sut->wait_for_workers(2, long_wait));
  EXPECT_EQ(this->sut->resize(0), caf::sec::invalid_argument);
  EXPECT_FALSE(this->sut->shutdown({.wait = true, .timeout = long_wait}));
  EXPECT_EQ(this->sut->resize(3), caf::sec::request_receiver_down);
}

} // namespace
