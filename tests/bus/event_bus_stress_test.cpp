#include "actorbus/bus/event_bus.hpp"
#include "actorbus/runtime/config.hpp"

#include "gate.hpp"
#include "timing.hpp"

#include <caf/actor_system.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

// The callback courier's fast path under stress, on the real scheduler: a
// courier that goes idle after every empty pass (linger 0) and takes small
// batches, so that publishers race its going idle, its queue swaps and its
// reuse of spent slots as often as possible. Every wait is on a future or a
// gate with a timeout.

namespace {

using namespace actorbus::bus;
using namespace std::chrono_literals;
using actorbus::test::patience;

/// An event that counts its live instances, wherever they are kept (queued,
/// being handled, or spent in a queue slot).
struct counted {
  static inline std::atomic<long> live{0};

  int seq = 0;

  counted() {
    ++live;
  }

  explicit counted(int x)
      : seq(x) {
    ++live;
  }

  counted(const counted& other)
      : seq(other.seq) {
    ++live;
  }

  counted(counted&& other) noexcept
      : seq(other.seq) {
    ++live;
  }

  counted& operator=(const counted&) = default;

  counted& operator=(counted&&) noexcept = default;

  ~counted() {
    --live;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, counted& x) {
  return f(caf::meta::type_name("counted"), x.seq);
}

/// One event of one of several publishers.
struct stamped {
  int publisher = 0;
  int seq = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stamped& x) {
  return f(caf::meta::type_name("stamped"), x.publisher, x.seq);
}

/// Publishes on a helper thread when destroyed, and records whether that
/// publish got through within a bound while the destructor ran: it does not
/// if the thread destroying the event holds a lock the publish needs.
struct flush_probe {
  event_bus* bus = nullptr;
  std::vector<std::thread>* helpers = nullptr;
  std::atomic<int>* blocked = nullptr;
  std::promise<void>* destroyed = nullptr;

  ~flush_probe() {
    auto done = std::make_shared<std::promise<void>>();
    auto flushed = done->get_future();
    helpers->emplace_back([b = bus, done] {
      (void)b->publish("probe.flushed", 0);
      done->set_value();
    });
    if (flushed.wait_for(actorbus::test::slack(2s)) !=
        std::future_status::ready)
      ++*blocked;
    destroyed->set_value();
  }
};

/// An event whose destruction (of its last copy) runs a flush_probe.
struct flushing {
  std::shared_ptr<flush_probe> probe;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, flushing&) {
  return f(caf::meta::type_name("flushing"));
}

constexpr size_t batch = 2;

bus_config stress_config() {
  bus_config result;
  result.batch_size = batch;
  result.linger = 0;
  return result;
}

class event_bus_stress_test : public ::testing::Test {
protected:
  event_bus_stress_test()
      : sys(cfg)
      , sut(sys, stress_config()) {
    // The first courier of a process may start late under ASan (timing.hpp).
    std::promise<void> started;
    auto warm_up =
        sut.subscribe<int>("warm.up", [&started](int) { started.set_value(); });
    if (warm_up && !sut.publish("warm.up", 0))
      started.get_future().wait_for(patience);
  }

  ~event_bus_stress_test() override {
    sut.close();
  }

  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys;
  event_bus sut;
};

TEST_F(event_bus_stress_test,
       bursts_racing_an_idle_courier_lose_nothing_and_keep_publish_order) {
  // Publishers publish in bursts of 1 to 3 events and yield in between, so
  // the courier keeps going idle while publishes come in. Without any
  // further publish, every event must arrive.
  constexpr int publishers = 4;
  constexpr int per_publisher = 20000;
  struct checker {
    std::vector<int> next = std::vector<int>(publishers, 0);
    int out_of_order = 0;
    int received = 0;
    std::promise<void> done;
  };
  subscription_options roomy;
  roomy.block_timeout = patience;
  subscription_options tight = roomy;
  tight.capacity = 3; // publishers wait for room all the time
  std::vector<checker> checks(2);
  std::vector<subscription> subs;
  for (auto* opts : {&roomy, &tight}) {
    auto& c = checks[subs.size()];
    auto s = sut.subscribe<stamped>(
        "burst.#",
        [&c](const stamped& x) {
          if (x.seq != c.next[x.publisher])
            ++c.out_of_order;
          c.next[x.publisher] = x.seq + 1;
          if (++c.received == publishers * per_publisher)
            c.done.set_value();
        },
        *opts);
    ASSERT_TRUE(s);
    subs.push_back(std::move(*s));
  }
  std::atomic<int> failed_publishes{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < publishers; ++p)
    threads.emplace_back([&, p] {
      auto topic = "burst." + std::to_string(p);
      for (int i = 0; i < per_publisher;) {
        for (int n = 1 + i % 3; n > 0 && i < per_publisher; --n, ++i)
          if (sut.publish(topic, stamped{p, i}))
            ++failed_publishes;
        std::this_thread::yield();
      }
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(failed_publishes, 0);
  for (auto& c : checks) {
    ASSERT_EQ(c.done.get_future().wait_for(patience),
              std::future_status::ready);
    EXPECT_EQ(c.out_of_order, 0);
    EXPECT_EQ(c.next, std::vector<int>(publishers, per_publisher));
  }
}

TEST_F(event_bus_stress_test, no_callback_runs_after_cancel_returned_true) {
  // A publisher keeps publishing while subscriptions are cancelled one
  // after another from this thread.
  std::atomic<bool> stop{false};
  std::thread publisher{[&] {
    for (int i = 0; !stop.load(); ++i)
      (void)sut.publish("hot", i);
  }};
  std::atomic<int> late_callbacks{0};
  int refused_cancels = 0;
  for (int round = 0; round < 50; ++round) {
    auto cancelled = std::make_shared<std::atomic<bool>>(false);
    auto busy = std::make_shared<std::promise<void>>();
    auto handled = std::make_shared<int>(0);
    subscription_options opts;
    opts.policy = overload_policy::drop_oldest;
    auto sub = sut.subscribe<int>(
        "hot",
        [cancelled, busy, handled, &late_callbacks](int) {
          if (cancelled->load())
            ++late_callbacks;
          if (++*handled == 100)
            busy->set_value();
        },
        opts);
    ASSERT_TRUE(sub);
    ASSERT_EQ(busy->get_future().wait_for(patience), std::future_status::ready);
    if (sub->cancel())
      cancelled->store(true);
    else
      ++refused_cancels;
  }
  stop.store(true);
  publisher.join();
  EXPECT_EQ(late_callbacks, 0);
  EXPECT_EQ(refused_cancels, 0);
}

TEST_F(event_bus_stress_test,
       a_busy_callback_subscription_keeps_a_bounded_number_of_events_alive) {
  // Handled events may wait spent in queue slots, at most 2 x capacity
  // (a power of two here) on top of what the publisher holds itself.
  constexpr size_t capacity = 64;
  constexpr int n = 200000;
  ASSERT_EQ(counted::live, 0);
  subscription_options opts;
  opts.capacity = capacity;
  opts.policy = overload_policy::block;
  opts.block_timeout = patience;
  std::promise<void> done;
  std::atomic<long> max_seen_by_courier{0};
  auto sub = sut.subscribe<counted>(
      "counted",
      [&](const counted& x) {
        auto live = counted::live.load();
        if (live > max_seen_by_courier.load())
          max_seen_by_courier.store(live);
        if (x.seq == n - 1)
          done.set_value();
      },
      opts);
  ASSERT_TRUE(sub);
  long max_seen_by_publisher = 0;
  for (int i = 0; i < n; ++i) {
    ASSERT_FALSE(sut.publish("counted", counted{i}));
    max_seen_by_publisher =
        std::max(max_seen_by_publisher, counted::live.load());
  }
  ASSERT_EQ(done.get_future().wait_for(patience), std::future_status::ready);
  auto bound = static_cast<long>(2 * capacity) + 2;
  EXPECT_LE(max_seen_by_publisher, bound);
  EXPECT_LE(max_seen_by_courier.load(), bound);
  // Cancelling frees every event the subscription kept.
  ASSERT_TRUE(sub->cancel());
  EXPECT_EQ(counted::live, 0);
}

TEST_F(event_bus_stress_test,
       drop_oldest_keeps_the_newest_events_while_the_callback_is_busy) {
  // The callback stalls on event 1 while the queue behind it is full, then
  // 50 newer events arrive. drop_oldest must evict queued old events for
  // them: the callback holds at most one batch it cannot give up.
  constexpr size_t capacity = 8;
  subscription_options opts;
  opts.capacity = capacity;
  opts.policy = overload_policy::drop_oldest;
  actorbus::test::gate first_entered;
  actorbus::test::gate first_release;
  actorbus::test::gate second_entered;
  actorbus::test::gate second_release;
  std::promise<void> done;
  std::vector<int> got;
  auto sub = sut.subscribe<int>(
      "quotes",
      [&](int x) {
        got.push_back(x);
        if (x == 0) {
          first_entered.open();
          first_release.pass();
        } else if (x == 1) {
          second_entered.open();
          second_release.pass();
        } else if (x == 149) {
          done.set_value();
        }
      },
      opts);
  ASSERT_TRUE(sub);
  ASSERT_FALSE(sut.publish("quotes", 0));
  ASSERT_TRUE(first_entered.pass());
  for (int i = 1; i < static_cast<int>(capacity); ++i)
    ASSERT_FALSE(sut.publish("quotes", i));
  first_release.open();
  ASSERT_TRUE(second_entered.pass());
  for (int i = 100; i < 150; ++i)
    ASSERT_FALSE(sut.publish("quotes", i));
  second_release.open();
  ASSERT_EQ(done.get_future().wait_for(patience), std::future_status::ready);
  auto newest =
      std::count_if(got.begin(), got.end(), [](int x) { return x >= 100; });
  // Only the batch the courier was in (event 1 and at most batch - 1 more)
  // may hold old events back from eviction.
  EXPECT_GE(static_cast<size_t>(newest), capacity - batch)
      << ::testing::PrintToString(got);
  EXPECT_EQ(got.back(), 149);
}

TEST_F(event_bus_stress_test,
       a_handled_event_is_destroyed_outside_the_locks_publishers_need) {
  // An event's destructor may publish (or wait for a thread that does). A
  // handled event left spent in a queue slot must not be destroyed while
  // the subscription's lock is held, which that publish needs.
  std::vector<std::thread> helpers;
  std::atomic<int> blocked{0};
  actorbus::test::gate probe_entered;
  actorbus::test::gate probe_release;
  actorbus::test::gate next_entered;
  actorbus::test::gate next_release;
  int handled = 0;
  auto sub = sut.subscribe<flushing>("probe.#", [&](const flushing&) {
    if (++handled == 1) {
      probe_entered.open();
      probe_release.pass();
    } else if (handled == 2) {
      next_entered.open();
      next_release.pass();
    }
  });
  ASSERT_TRUE(sub);
  std::promise<void> destroyed;
  {
    auto p = std::make_shared<flush_probe>();
    p->bus = &sut;
    p->helpers = &helpers;
    p->blocked = &blocked;
    p->destroyed = &destroyed;
    ASSERT_FALSE(sut.publish("probe.x", flushing{std::move(p)}));
  }
  ASSERT_TRUE(probe_entered.pass());
  // Queued behind the probe event: the next pass takes the queue, and the
  // probe event's slot (handled, spent) becomes a queue slot again, freed
  // when the subscription goes idle.
  ASSERT_FALSE(sut.publish("probe.x", flushing{}));
  probe_release.open();
  ASSERT_TRUE(next_entered.pass());
  next_release.open();
  ASSERT_EQ(destroyed.get_future().wait_for(patience),
            std::future_status::ready);
  for (auto& t : helpers)
    t.join();
  EXPECT_EQ(blocked, 0);
}

} // namespace
