#include "actorbus/bus/event_bus.hpp"
#include "actorbus/runtime/config.hpp"

#include "timing.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

// The bus on the real scheduler with publishers on plain threads: volume,
// blocking back-pressure, concurrency and scatter/gather. Every wait is on a
// future with a timeout.

namespace {

using namespace actorbus::bus;
using namespace std::chrono_literals;
using actorbus::test::slack;

constexpr auto patience = 60s;

class event_bus_threads_test : public ::testing::Test {
protected:
  event_bus_threads_test()
      : sys(cfg)
      , sut(sys) {
    // nop
  }

  /// Collects the dead letters (call before the scenario).
  void watch_dead_letters() {
    auto sub = sut.subscribe<dead_letter>(dead_letter_topic,
                                          [this](const dead_letter& x) {
                                            std::lock_guard guard{dead_mtx};
                                            dead.push_back(x.reason);
                                          });
    dead_sub = std::move(*sub);
  }

  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys;
  event_bus sut;
  subscription dead_sub;
  std::mutex dead_mtx;
  std::vector<dead_letter_reason> dead;
};

TEST_F(event_bus_threads_test,
       a_million_events_reach_ten_subscribers_without_loss_in_order) {
  constexpr int n = 1'000'000;
  constexpr int subscribers = 10;
  watch_dead_letters();
  struct checker {
    int next = 0;
    int out_of_order = 0;
    std::promise<void> done;
  };
  std::vector<checker> checks(subscribers);
  std::vector<subscription> subs;
  // A loaded (or sanitized) machine may starve a courier for more than the
  // default second: the publisher waits instead of being refused.
  subscription_options opts;
  opts.block_timeout = patience;
  for (auto& c : checks) {
    auto s = sut.subscribe<int>(
        "load.events",
        [&c](int x) {
          if (x != c.next)
            ++c.out_of_order;
          c.next = x + 1;
          if (c.next == n)
            c.done.set_value();
        },
        opts);
    ASSERT_TRUE(s);
    subs.push_back(std::move(*s));
  }
  for (int i = 0; i < n; ++i)
    ASSERT_FALSE(sut.publish("load.events", i)); // block policy: no loss
  for (auto& c : checks) {
    ASSERT_EQ(c.done.get_future().wait_for(patience),
              std::future_status::ready);
    EXPECT_EQ(c.out_of_order, 0);
    EXPECT_EQ(c.next, n);
  }
  for (auto& s : subs)
    s.cancel(); // waits for the last callbacks' bookkeeping
  auto st = sut.stats("load.events");
  EXPECT_EQ(st.published, uint64_t{n});
  EXPECT_EQ(st.delivered, uint64_t{n} * subscribers);
  EXPECT_EQ(st.dropped, 0u);
  std::lock_guard guard{dead_mtx};
  EXPECT_TRUE(dead.empty());
}

TEST_F(event_bus_threads_test,
       a_blocked_publisher_times_out_on_a_stalled_subscriber) {
  watch_dead_letters();
  std::promise<void> release;
  auto gate = release.get_future().share();
  std::promise<void> caught_up;
  std::atomic<int> handled{0};
  subscription_options opts;
  opts.capacity = 2;
  opts.policy = overload_policy::block;
  opts.block_timeout = slack(50ms);
  auto sub = sut.subscribe<int>(
      "slow",
      [&, gate](int) {
        gate.wait_for(patience);
        if (++handled == 2)
          caught_up.set_value();
      },
      opts);
  ASSERT_TRUE(sub);
  EXPECT_FALSE(sut.publish("slow", 1));
  EXPECT_FALSE(sut.publish("slow", 2));
  // The subscriber is stuck on event 1 with event 2 counted: the queue is
  // full, so this publish waits for the block timeout and gives up.
  auto t0 = std::chrono::steady_clock::now();
  auto err = sut.publish("slow", 3);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, opts.block_timeout);
  EXPECT_EQ(err, errc::publish_timeout);
  EXPECT_EQ(sub->dropped(), 1u);
  release.set_value();
  ASSERT_EQ(caught_up.get_future().wait_for(patience),
            std::future_status::ready);
  auto done = std::async(std::launch::async, [&] {
    // After the subscriber caught up, publishing succeeds again (its
    // courier frees the slots on its next pass, well within the timeout).
    return sut.publish("slow", 4);
  });
  ASSERT_EQ(done.wait_for(patience), std::future_status::ready);
  EXPECT_FALSE(done.get());
}

TEST_F(event_bus_threads_test,
       a_blocked_publisher_resumes_when_the_subscriber_catches_up) {
  std::promise<void> all;
  std::atomic<int> handled{0};
  subscription_options opts;
  opts.capacity = 4;
  opts.policy = overload_policy::block;
  opts.block_timeout = patience;
  auto sub = sut.subscribe<int>(
      "steady",
      [&](int) {
        if (++handled == 1000)
          all.set_value();
      },
      opts);
  for (int i = 0; i < 1000; ++i)
    ASSERT_FALSE(sut.publish("steady", i));
  ASSERT_EQ(all.get_future().wait_for(patience), std::future_status::ready);
  EXPECT_EQ(sub->dropped(), 0u);
}

TEST_F(event_bus_threads_test,
       publishers_on_many_threads_each_keep_their_order) {
  constexpr int threads = 4;
  constexpr int per_thread = 20000;
  std::vector<int> next(threads, 0);
  std::atomic<int> bad{0};
  std::promise<void> done;
  int total = 0;
  auto sub = sut.subscribe<std::pair<int, int>>(
      "multi", [&](const std::pair<int, int>& x) {
        if (x.second != next[x.first]++)
          ++bad;
        if (++total == threads * per_thread)
          done.set_value();
      });
  std::vector<std::thread> pubs;
  for (int t = 0; t < threads; ++t)
    pubs.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i)
        sut.publish("multi", std::make_pair(t, i));
    });
  for (auto& p : pubs)
    p.join();
  ASSERT_EQ(done.get_future().wait_for(patience), std::future_status::ready);
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(event_bus_threads_test,
       subscribing_and_unsubscribing_during_traffic_is_safe) {
  std::atomic<bool> stop{false};
  std::atomic<long> received{0};
  std::promise<void> last;
  auto steady = sut.subscribe<int>("churn.x", [&](int x) {
    ++received;
    if (x == -1)
      last.set_value();
  });
  std::atomic<int> late{0};
  auto churner = std::thread([&] {
    while (!stop.load()) {
      auto gone = std::make_shared<std::atomic<bool>>(false);
      auto s = sut.subscribe<int>("churn.*", [&, gone](int) {
        if (gone->load())
          ++late;
      });
      std::this_thread::yield();
      s->cancel();
      gone->store(true); // from here on, this callback must never run
    }
  });
  for (int i = 0; i < 50000; ++i)
    ASSERT_FALSE(sut.publish("churn.x", i));
  stop = true;
  churner.join();
  sut.publish("churn.x", -1);
  ASSERT_EQ(last.get_future().wait_for(patience), std::future_status::ready);
  EXPECT_EQ(late.load(), 0);
  EXPECT_EQ(sut.subscription_count(), 1u);
  steady->cancel(); // waits for the last callback's bookkeeping
  EXPECT_EQ(steady->delivered(), 50001u);
}

TEST_F(event_bus_threads_test,
       after_cancel_returns_a_running_callback_has_finished) {
  std::promise<void> entered;
  std::atomic<bool> finished{false};
  std::atomic<int> calls{0};
  subscription sub;
  sub = std::move(*sut.subscribe<int>("c", [&](int) {
    if (++calls == 1) {
      entered.set_value();
      // Still running when cancel starts (it deactivates first, then waits).
      for (auto t0 = std::chrono::steady_clock::now();
           sub.active() && std::chrono::steady_clock::now() - t0 < patience;)
        std::this_thread::yield();
      finished = true;
    }
  }));
  sut.publish("c", 1);
  sut.publish("c", 2);
  ASSERT_EQ(entered.get_future().wait_for(patience), std::future_status::ready);
  sub.cancel();
  EXPECT_TRUE(finished.load());
  EXPECT_EQ(calls.load(), 1); // event 2 never ran
}

TEST_F(event_bus_threads_test,
       gather_collects_the_replies_of_callbacks_and_actors) {
  auto doubler = sut.subscribe<int>("price.quote", [](int x) { return 2 * x; });
  auto tripler = sut.subscribe<int>("price.*", [](int x) { return 3 * x; });
  auto actor = sys.spawn([](caf::event_based_actor*) {
    return caf::behavior{[](const std::string&, const caf::actor_addr&, int x) {
      return 5 * x;
    }};
  });
  auto from_actor = sut.subscribe("price.#", actor);
  auto res = sut.gather<int>("price.quote", 10, 10s);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->asked, 3u);
  EXPECT_EQ(res->missing(), 0u);
  std::sort(res->replies.begin(), res->replies.end());
  EXPECT_EQ(res->replies, (std::vector<int>{20, 30, 50}));
  caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
}

TEST_F(event_bus_threads_test,
       gather_stops_at_the_deadline_and_reports_the_silent) {
  std::promise<void> release;
  auto gate = release.get_future().share();
  auto quick = sut.subscribe<int>("poll", [](int) { return 1; });
  auto slow = sut.subscribe<int>("poll", [gate](int) {
    gate.wait_for(patience);
    return 2;
  });
  auto broken = sut.subscribe<int>(
      "poll", [](int) -> int { throw std::runtime_error("no answer"); });
  // The quick and the broken subscriber answer well within the deadline;
  // the slow one is held until gather gave up on it.
  auto deadline = slack(100ms);
  auto t0 = std::chrono::steady_clock::now();
  auto res = sut.gather<int>("poll", 0, deadline);
  auto waited = std::chrono::steady_clock::now() - t0;
  release.set_value();
  EXPECT_GE(waited, deadline);
  EXPECT_LT(waited, deadline + slack(1s));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->asked, 3u);
  EXPECT_EQ(res->replies, std::vector<int>{1});
  EXPECT_EQ(res->failed, 1u);
  EXPECT_EQ(res->missing(), 1u);
  auto nobody = sut.gather<int>("nobody.home", 0, 10ms);
  ASSERT_TRUE(nobody);
  EXPECT_EQ(nobody->asked, 0u);
}

/// An actor subscriber that holds its first event until `release` is set.
struct gated_actor {
  std::promise<void> first_started;
  std::promise<void> release;
  std::atomic<int> handled{0};
  caf::actor who;

  /// Subscribes a new gated actor to "n" and publishes event 0 to it;
  /// returns once the actor holds it.
  subscription hold_first(caf::actor_system& sys, event_bus& bus,
                          subscription_options opts) {
    who = spawn(sys);
    auto sub = bus.subscribe("n", who, opts);
    EXPECT_TRUE(sub);
    EXPECT_FALSE(bus.publish("n", 0));
    EXPECT_EQ(first_started.get_future().wait_for(patience),
              std::future_status::ready);
    return sub ? std::move(*sub) : subscription{};
  }

  ~gated_actor() {
    caf::anon_send_exit(who, caf::exit_reason::user_shutdown);
  }

  caf::actor spawn(caf::actor_system& sys) {
    auto gate = release.get_future().share();
    return sys.spawn([this, gate](caf::event_based_actor*) {
      return caf::behavior{
          [this, gate](const std::string&, const caf::actor_addr&, int x) {
            if (x == 0) {
              first_started.set_value();
              gate.wait_for(patience);
            }
            ++handled;
          },
          // A round trip behind every event in the mailbox.
          [](caf::atom_value x) { return x; },
      };
    });
  }
};

TEST_F(event_bus_threads_test,
       an_actor_handles_no_event_after_cancel_is_acknowledged) {
  gated_actor target;
  subscription_options opts;
  opts.max_in_flight = 4;
  // Event 0 is held in the actor's handler; 1-3 then fill its window of 4
  // and wait in its mailbox; 4 and 5 stay in the bus's queue.
  auto sub = target.hold_first(sys, sut, opts);
  for (int i = 1; i < 6; ++i)
    ASSERT_FALSE(sut.publish("n", i));
  auto sent = [&] { return sut.stats("n").delivered; }; // handed to the actor
  for (auto t0 = std::chrono::steady_clock::now();
       sent() < 4 && std::chrono::steady_clock::now() - t0 < patience;)
    std::this_thread::yield();
  ASSERT_EQ(sent(), 4u);
  auto cancelled = std::async(std::launch::async, [&] { return sub.cancel(); });
  // Acknowledging now would be a lie: three events wait in the mailbox.
  EXPECT_EQ(cancelled.wait_for(100ms), std::future_status::timeout);
  target.release.set_value();
  ASSERT_EQ(cancelled.wait_for(patience), std::future_status::ready);
  EXPECT_TRUE(cancelled.get());
  auto at_ack = target.handled.load();
  EXPECT_EQ(at_ack, 4);
  // Everything sent before the round trip has been handled after it.
  caf::scoped_actor self{sys};
  self->request(target.who, patience, caf::atom("flush"))
      .receive([](caf::atom_value) {},
               [](caf::error& err) { FAIL() << caf::to_string(err); });
  EXPECT_EQ(target.handled.load(), at_ack);
  EXPECT_EQ(sut.stats("n").dead_lettered, 2u); // 4 and 5: subscriber_down
}

TEST_F(event_bus_threads_test,
       cancel_reports_a_missing_acknowledgement_after_its_timeout) {
  gated_actor target;
  subscription_options opts;
  opts.cancel_timeout = std::chrono::milliseconds(20);
  auto sub = target.hold_first(sys, sut, opts);
  EXPECT_FALSE(sub.cancel()); // the actor still holds event 0
  EXPECT_FALSE(sub.active());
  target.release.set_value();
}

} // namespace
