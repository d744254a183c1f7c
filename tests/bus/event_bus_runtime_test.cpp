#include "actorbus/bus/event_bus.hpp"
#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "timing.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

// A bus made on a runtime::runtime: the runtime tracks the bus's actors, so
// its shutdown stops them instead of abandoning the actor system, and the
// bus may outlive the runtime. Real scheduler; every wait is on a future
// with a timeout.

namespace {

using namespace actorbus::bus;
using namespace std::chrono_literals;
namespace rt = actorbus::runtime;
using actorbus::test::patience;

/// An actor subscriber that never answers: it keeps each event's response
/// promise, so the events stay in flight until it exits.
caf::behavior silent(caf::event_based_actor* self,
                     std::shared_ptr<std::promise<void>> received) {
  auto held = std::make_shared<std::vector<caf::response_promise>>();
  return {
      [self, received, held](const std::string&, const caf::actor_addr&, int) {
        held->push_back(self->make_response_promise());
        if (held->size() == 1)
          received->set_value();
      },
  };
}

class event_bus_runtime_test : public ::testing::Test {
protected:
  static rt::runtime_config config() {
    rt::runtime_config cfg;
    cfg.set("actorbus.shutdown-timeout", caf::timespan{10s});
    return cfg;
  }

  /// Subscribes a callback that fulfils `got` with the first event.
  subscription subscribe_callback(std::promise<int>& got) {
    auto sub = sut.subscribe<int>("t", [&got, first = true](int x) mutable {
      if (first)
        got.set_value(x);
      first = false;
    });
    EXPECT_TRUE(sub) << rt::describe(sub.error());
    return sub ? std::move(*sub) : subscription{};
  }

  std::unique_ptr<rt::runtime> runtime =
      std::make_unique<rt::runtime>(config());
  event_bus sut{*runtime};
};

} // namespace

TEST_F(event_bus_runtime_test, the_runtime_tracks_a_courier_per_subscription) {
  auto before = runtime->tracked();
  std::promise<int> a;
  std::promise<int> b;
  auto sub_a = subscribe_callback(a);
  auto sub_b = subscribe_callback(b);
  EXPECT_EQ(runtime->tracked(), before + 2);
  EXPECT_FALSE(sut.publish("t", 7));
  auto got = a.get_future();
  ASSERT_EQ(got.wait_for(patience), std::future_status::ready);
  EXPECT_EQ(got.get(), 7);
}

TEST_F(event_bus_runtime_test,
       runtime_shutdown_stops_the_bus_without_abandoning) {
  std::promise<int> got;
  auto sub = subscribe_callback(got);
  auto received = std::make_shared<std::promise<void>>();
  auto actor = runtime->spawn(silent, received);
  ASSERT_TRUE(actor);
  auto actor_sub = sut.subscribe("t", *actor);
  ASSERT_TRUE(actor_sub);
  EXPECT_FALSE(sut.publish("t", 1));
  auto got_fut = got.get_future();
  ASSERT_EQ(got_fut.wait_for(patience), std::future_status::ready);
  ASSERT_EQ(received->get_future().wait_for(patience),
            std::future_status::ready);
  auto report = runtime->shutdown(10s);
  EXPECT_EQ(report.abandoned, 0u);
  EXPECT_EQ(report.killed, 0u);
  EXPECT_EQ(runtime->tracked(), 0u);
  EXPECT_FALSE(sub.active());
  EXPECT_FALSE(actor_sub->active());
  EXPECT_EQ(sut.publish("t", 2), errc::closed);
  auto late = sut.subscribe<int>("t", [](int) {});
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error(), errc::closed);
}

TEST_F(event_bus_runtime_test, the_bus_may_outlive_its_runtime) {
  subscription_options opts;
  opts.cancel_timeout = 60s; // a wait for acknowledgements would show
  auto received = std::make_shared<std::promise<void>>();
  auto actor = runtime->spawn(silent, received);
  ASSERT_TRUE(actor);
  auto sub = sut.subscribe("t", *actor, opts);
  ASSERT_TRUE(sub);
  EXPECT_FALSE(sut.publish("t", 1)); // stays in flight: never acknowledged
  ASSERT_EQ(received->get_future().wait_for(patience),
            std::future_status::ready);
  runtime.reset(); // shuts down and destroys the actor system
  EXPECT_EQ(sut.publish("t", 2), errc::closed);
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(sub->cancel()); // nothing can arrive any more: no wait
  sut.close();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  EXPECT_EQ(sut.subscription_count(), 0u);
}

TEST_F(event_bus_runtime_test, a_bus_made_on_a_stopped_runtime_is_closed) {
  runtime->shutdown(10s);
  event_bus late{*runtime};
  EXPECT_EQ(late.publish("t", 1), errc::closed);
  auto sub = late.subscribe<int>("t", [](int) {});
  ASSERT_FALSE(sub);
  EXPECT_EQ(sub.error(), errc::closed);
}
