#include "actorbus/bus/event_bus.hpp"

#include "deterministic_fixture.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

// The bus on CAF's deterministic scheduler: couriers run only when the test
// calls run(), so "a stalled subscriber" is simply one not run yet, and
// every count below is exact.

namespace {

using namespace actorbus::bus;
using namespace std::chrono_literals;

struct order {
  int id = 0;
  std::string item;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order& x) {
  return f(caf::meta::type_name("order"), x.id, x.item);
}

/// An event that shares a token: the token's use count tells how many
/// copies of the event are still alive.
struct tracked {
  std::shared_ptr<int> token;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tracked&) {
  return f(caf::meta::type_name("tracked"));
}

class event_bus_test : public actorbus::test::deterministic_fixture {
protected:
  event_bus_test()
      : sut(sys) {
    // Every test sees the dead letters.
    auto sub = sut.subscribe<dead_letter>(
        dead_letter_topic, [this](const dead_letter& x) { dead.push_back(x); },
        subscription_options{100000, overload_policy::drop_newest, 1s, 64});
    dead_sub = std::move(*sub);
  }

  subscription_options bounded(size_t capacity, overload_policy policy) {
    subscription_options opts;
    opts.capacity = capacity;
    opts.policy = policy;
    return opts;
  }

  event_bus sut;
  subscription dead_sub;
  std::vector<dead_letter> dead;
};

TEST_F(event_bus_test, a_callback_receives_the_typed_event_with_its_topic) {
  std::vector<std::string> got;
  auto sub = sut.subscribe<order>("orders.created", [&](const event<order>& e) {
    got.push_back(e.topic() + ":" + std::to_string(e.value().id) + ":" +
                  e.value().item);
    EXPECT_FALSE(e.publisher()); // published from a non-actor thread
  });
  ASSERT_TRUE(sub);
  EXPECT_FALSE(sut.publish("orders.created", order{7, "book"}));
  run();
  EXPECT_EQ(got, std::vector<std::string>{"orders.created:7:book"});
  EXPECT_TRUE(dead.empty());
}

TEST_F(event_bus_test, an_event_published_by_an_actor_names_it_as_publisher) {
  caf::actor_addr seen;
  auto sub = sut.subscribe<int>(
      "ticks", [&](const event<int>& e) { seen = e.publisher(); });
  auto publisher = sys.spawn([this](caf::event_based_actor* self) {
    return caf::behavior{
        [this, self](int x) { sut.publish(self, "ticks", x); }};
  });
  caf::anon_send(publisher, 1);
  run();
  EXPECT_EQ(seen, publisher.address());
}

TEST_F(event_bus_test, wildcards_select_the_matching_topics_only) {
  std::vector<std::string> one_level;
  std::vector<std::string> any_depth;
  auto a = sut.subscribe<int>(
      "orders.*", [&](const event<int>& e) { one_level.push_back(e.topic()); });
  auto b = sut.subscribe<int>(
      "orders.#", [&](const event<int>& e) { any_depth.push_back(e.topic()); });
  for (auto* t : {"orders", "orders.created", "orders.eu.created", "users.new"})
    EXPECT_FALSE(sut.publish(t, 1));
  run();
  EXPECT_EQ(one_level, std::vector<std::string>{"orders.created"});
  EXPECT_EQ(any_depth, (std::vector<std::string>{"orders", "orders.created",
                                                 "orders.eu.created"}));
  ASSERT_EQ(dead.size(), 1u); // users.new had no subscriber
  EXPECT_EQ(dead[0].topic, "users.new");
  EXPECT_EQ(dead[0].reason, dead_letter_reason::no_subscriber);
}

TEST_F(event_bus_test, events_of_one_publisher_arrive_in_publish_order) {
  std::vector<int> a;
  std::vector<int> b;
  auto s1 = sut.subscribe<int>("seq", [&](int x) { a.push_back(x); });
  auto s2 = sut.subscribe<int>("#", [&](int x) { b.push_back(x); });
  std::vector<int> expected;
  for (int i = 0; i < 5000; ++i) {
    expected.push_back(i);
    ASSERT_FALSE(sut.publish("seq", i));
    if (i % 700 == 0)
      run(); // interleave delivery with publishing
  }
  run();
  EXPECT_EQ(a, expected);
  EXPECT_EQ(b, expected);
}

TEST_F(event_bus_test,
       a_throwing_handler_does_not_stop_the_others_and_is_reported) {
  int good = 0;
  auto bad = sut.subscribe<int>("jobs", [](int x) {
    if (x == 2)
      throw std::runtime_error("cannot do job 2");
  });
  auto ok = sut.subscribe<int>("jobs", [&](int) { ++good; });
  for (int i = 1; i <= 3; ++i)
    sut.publish("jobs", i);
  run();
  EXPECT_EQ(good, 3);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].reason, dead_letter_reason::handler_failed);
  EXPECT_EQ(dead[0].detail, "cannot do job 2");
  EXPECT_EQ(dead[0].pattern, "jobs");
  ASSERT_TRUE(dead[0].event.match_elements<int>());
  EXPECT_EQ(dead[0].event.get_as<int>(0), 2);
  EXPECT_EQ(bad->delivered(), 2u); // jobs 1 and 3
}

TEST_F(event_bus_test,
       an_event_of_another_type_is_a_type_mismatch_dead_letter) {
  int ints = 0;
  auto sub = sut.subscribe<int>("mixed", [&](int) { ++ints; });
  sut.publish("mixed", std::string{"not an int"});
  sut.publish("mixed", 5);
  run();
  EXPECT_EQ(ints, 1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].reason, dead_letter_reason::type_mismatch);
}

TEST_F(event_bus_test, drop_newest_keeps_the_first_events_and_counts_the_rest) {
  std::vector<int> got;
  auto sub = sut.subscribe<int>(
      "burst", [&](int x) { got.push_back(x); },
      bounded(3, overload_policy::drop_newest));
  for (int i = 0; i < 10; ++i)
    EXPECT_FALSE(sut.publish("burst", i)); // drops are not publish errors
  EXPECT_EQ(sub->queued(), 3u);
  run();
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(sub->dropped(), 7u);
  EXPECT_EQ(sut.stats("burst").dropped, 7u);
  ASSERT_EQ(dead.size(), 7u);
  EXPECT_EQ(dead[0].reason, dead_letter_reason::dropped_newest);
  EXPECT_EQ(dead[0].event.get_as<int>(0), 3);
}

TEST_F(event_bus_test, drop_oldest_keeps_the_latest_events) {
  std::vector<int> got;
  auto sub = sut.subscribe<int>(
      "burst", [&](int x) { got.push_back(x); },
      bounded(3, overload_policy::drop_oldest));
  for (int i = 0; i < 10; ++i)
    EXPECT_FALSE(sut.publish("burst", i));
  run();
  EXPECT_EQ(got, (std::vector<int>{7, 8, 9}));
  EXPECT_EQ(sub->dropped(), 7u);
  ASSERT_EQ(dead.size(), 7u);
  EXPECT_EQ(dead[0].reason, dead_letter_reason::dropped_oldest);
  EXPECT_EQ(dead[0].event.get_as<int>(0), 0);
}

TEST_F(event_bus_test,
       fail_policy_refuses_the_publish_but_others_still_receive) {
  int strict_got = 0;
  int relaxed_got = 0;
  auto strict = sut.subscribe<int>(
      "t", [&](int) { ++strict_got; }, bounded(1, overload_policy::fail));
  auto relaxed = sut.subscribe<int>("t", [&](int) { ++relaxed_got; });
  EXPECT_FALSE(sut.publish("t", 1));
  auto err = sut.publish("t", 2);
  EXPECT_EQ(err, errc::queue_full);
  run();
  EXPECT_EQ(strict_got, 1);
  EXPECT_EQ(relaxed_got, 2);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].reason, dead_letter_reason::rejected);
}

TEST_F(event_bus_test, a_stalled_subscriber_holds_no_more_than_its_capacity) {
  // Nothing runs between publishes: the subscriber is stalled. Its queue
  // must stay at the bound while 100000 events pass by.
  int fast_got = 0;
  auto stalled = sut.subscribe<std::string>(
      "feed", [](const std::string&) {},
      bounded(100, overload_policy::drop_oldest));
  for (int i = 0; i < 100000; ++i) {
    sut.publish("feed", std::string(64, 'x'));
    ASSERT_LE(stalled->queued(), 100u);
  }
  EXPECT_EQ(stalled->queued(), 100u);
  EXPECT_EQ(stalled->dropped(), 99900u);
  auto fast = sut.subscribe<std::string>(
      "feed", [&](const std::string&) { ++fast_got; });
  run();
  EXPECT_EQ(stalled->delivered(), 100u);
  EXPECT_EQ(stalled->queued(), 0u);
}

TEST_F(event_bus_test, an_idle_subscription_keeps_no_handled_event_alive) {
  // Handled events may wait in their queue slots for the publisher to reuse
  // them (so that they are freed on its thread), but not once the
  // subscriber went idle: a big payload must not outlive its delivery.
  auto token = std::make_shared<int>(0);
  int got = 0;
  auto sub = sut.subscribe<tracked>("t", [&](const tracked&) { ++got; });
  for (int i = 0; i < 5; ++i)
    sut.publish("t", tracked{token});
  EXPECT_EQ(token.use_count(), 6);
  run();
  EXPECT_EQ(got, 5);
  EXPECT_EQ(token.use_count(), 1);
}

TEST_F(event_bus_test,
       nothing_arrives_after_cancel_and_queued_events_are_dead_letters) {
  int got = 0;
  auto sub = sut.subscribe<int>("t", [&](int) { ++got; });
  sut.publish("t", 1);
  run();
  sut.publish("t", 2);
  sut.publish("t", 3);
  EXPECT_TRUE(sub->cancel());
  EXPECT_FALSE(sub->active());
  sut.publish("t", 4);
  run();
  EXPECT_EQ(got, 1);
  ASSERT_EQ(dead.size(), 3u);
  EXPECT_EQ(dead[0].reason, dead_letter_reason::subscriber_down);
  EXPECT_EQ(dead[1].reason, dead_letter_reason::subscriber_down);
  EXPECT_EQ(dead[2].reason, dead_letter_reason::no_subscriber);
  EXPECT_EQ(sut.stats("t").subscribers, 0u);
}

TEST_F(event_bus_test, destroying_the_handle_unsubscribes) {
  int got = 0;
  {
    auto sub = sut.subscribe<int>("t", [&](int) { ++got; });
    EXPECT_EQ(sut.stats("t").subscribers, 1u);
  }
  EXPECT_EQ(sut.stats("t").subscribers, 0u);
  sut.publish("t", 1);
  run();
  EXPECT_EQ(got, 0);
}

TEST_F(event_bus_test, a_callback_may_cancel_its_own_subscription) {
  std::vector<int> got;
  subscription self_sub;
  auto sub = sut.subscribe<int>("t", [&](int x) {
    got.push_back(x);
    if (x == 2)
      self_sub.cancel();
  });
  self_sub = std::move(*sub);
  for (int i = 1; i <= 4; ++i)
    sut.publish("t", i);
  run();
  EXPECT_EQ(got, (std::vector<int>{1, 2}));
  EXPECT_FALSE(self_sub.active());
}

TEST_F(event_bus_test, a_late_subscriber_receives_the_retained_value_first) {
  sut.publish("config.mode", std::string{"eco"}, publish_options{true});
  sut.publish("config.mode", std::string{"fast"}, publish_options{true});
  sut.publish("config.level", 3, publish_options{true});
  std::vector<std::string> got;
  auto sub = sut.subscribe<std::string>(
      "config.mode", [&](const std::string& x) { got.push_back(x); });
  sut.publish("config.mode", std::string{"slow"});
  run();
  EXPECT_EQ(got, (std::vector<std::string>{"fast", "slow"}));
  EXPECT_TRUE(dead.empty()); // retained events are not dead letters
  EXPECT_TRUE(sut.clear_retained("config.mode"));
  std::vector<std::string> late;
  auto sub2 = sut.subscribe<std::string>(
      "config.mode", [&](const std::string& x) { late.push_back(x); });
  run();
  EXPECT_TRUE(late.empty());
  int level = 0;
  auto sub3 = sut.subscribe<int>("config.#", [&](int x) { level = x; });
  run();
  EXPECT_EQ(level, 3);
}

TEST_F(event_bus_test, stats_count_every_outcome_per_topic) {
  auto sub = sut.subscribe<int>(
      "s",
      [](int x) {
        if (x < 0)
          throw std::runtime_error("negative");
      },
      bounded(2, overload_policy::drop_newest));
  auto other = sut.subscribe<int>("s.#", [](int) {});
  sut.publish("s", 1);
  sut.publish("s", -1);
  sut.publish("s", 2); // dropped by the first subscription
  run();
  auto st = sut.stats("s");
  EXPECT_EQ(st.published, 3u);
  EXPECT_EQ(st.delivered, 4u); // 1 by the first, 3 by the second
  EXPECT_EQ(st.dropped, 1u);
  EXPECT_EQ(st.dead_lettered, 2u); // the drop and the failure
  EXPECT_EQ(st.subscribers, 2u);
  auto all = sut.all_stats();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, "$dead-letters");
  EXPECT_EQ(all[0].second.published, 2u);
  EXPECT_EQ(all[1].first, "s");
}

TEST_F(event_bus_test, an_actor_subscriber_receives_topic_publisher_and_value) {
  std::vector<std::string> got;
  auto who = sys.spawn([&](caf::event_based_actor*) {
    return caf::behavior{[&](const std::string& topic,
                             const caf::actor_addr& from, const order& o) {
      got.push_back(topic + ":" + o.item + (from ? ":actor" : ":thread"));
    }};
  });
  auto sub = sut.subscribe("orders.*", who);
  ASSERT_TRUE(sub);
  sut.publish("orders.created", order{1, "pen"});
  run();
  EXPECT_EQ(got, std::vector<std::string>{"orders.created:pen:thread"});
  EXPECT_EQ(sub->delivered(), 1u);
}

TEST_F(event_bus_test,
       an_actor_keeps_at_most_max_in_flight_events_in_its_mailbox) {
  size_t handled = 0;
  size_t max_waiting = 0;
  auto who = sys.spawn([&](caf::event_based_actor* self) {
    return caf::behavior{
        [&, self](const std::string&, const caf::actor_addr&, int) {
          ++handled;
          max_waiting = std::max(max_waiting, self->mailbox().size());
        }};
  });
  subscription_options opts;
  opts.capacity = 8;
  opts.max_in_flight = 3;
  opts.policy = overload_policy::drop_newest;
  auto sub = sut.subscribe("n", who, opts);
  for (int i = 0; i < 20; ++i)
    sut.publish("n", i);
  run();
  EXPECT_EQ(handled, 8u);
  EXPECT_EQ(sub->dropped(), 12u);
  EXPECT_GE(max_waiting, 1u); // the window was used...
  EXPECT_LE(max_waiting, 2u); // ...and never exceeded: 3 sent, 1 in hand
}

TEST_F(event_bus_test,
       an_actor_handler_that_returns_a_value_counts_as_delivered) {
  int seen = 0;
  auto who = sys.spawn([&](caf::event_based_actor*) {
    return caf::behavior{
        [&](const std::string&, const caf::actor_addr&, int x) {
          ++seen;
          return x + 1;
        }};
  });
  auto sub = sut.subscribe("n", who);
  sut.publish("n", 1);
  sut.publish("n", 2);
  run();
  EXPECT_EQ(seen, 2);
  EXPECT_EQ(sub->delivered(), 2u);
  EXPECT_TRUE(dead.empty());
}

TEST_F(event_bus_test, an_actor_subscriber_receives_events_in_publish_order) {
  std::vector<int> got;
  auto who = sys.spawn([&](caf::event_based_actor*) {
    return caf::behavior{[&](const std::string&, const caf::actor_addr&,
                             int x) { got.push_back(x); }};
  });
  auto sub = sut.subscribe("seq", who);
  std::vector<int> expected;
  for (int i = 0; i < 1000; ++i) {
    expected.push_back(i);
    sut.publish("seq", i);
    if (i % 300 == 0)
      run();
  }
  run();
  EXPECT_EQ(got, expected);
}

TEST_F(event_bus_test, subscribing_an_already_dead_actor_reports_it_down) {
  auto who = sys.spawn([](caf::event_based_actor*) {
    return caf::behavior{
        [](const std::string&, const caf::actor_addr&, int) {}};
  });
  caf::anon_send_exit(who, caf::exit_reason::kill);
  run();
  auto sub = sut.subscribe("n", who);
  ASSERT_TRUE(sub);
  run();
  EXPECT_FALSE(sub->active());
  EXPECT_EQ(sut.subscription_count(), 1u); // only the dead-letter watcher
}

TEST_F(event_bus_test, a_dead_actor_subscriber_is_unsubscribed_and_reported) {
  auto who = sys.spawn([](caf::event_based_actor*) {
    return caf::behavior{
        [](const std::string&, const caf::actor_addr&, int) {}};
  });
  auto sub = sut.subscribe("n", who);
  run();
  caf::anon_send_exit(who, caf::exit_reason::kill);
  run();
  EXPECT_FALSE(sub->active());
  EXPECT_EQ(sut.stats("n").subscribers, 0u);
  sut.publish("n", 1);
  run();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].reason, dead_letter_reason::no_subscriber);
}

TEST_F(event_bus_test, an_actor_that_cannot_handle_the_event_is_reported) {
  auto who = sys.spawn([](caf::event_based_actor*) {
    return caf::behavior{
        [](const std::string&, const caf::actor_addr&, int) {}};
  });
  auto sub = sut.subscribe("n", who);
  sut.publish("n", std::string{"text"});
  run();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].reason, dead_letter_reason::handler_failed);
}

TEST_F(event_bus_test, bad_topics_and_patterns_are_refused_with_clear_errors) {
  EXPECT_EQ(sut.publish("orders..created", 1), errc::invalid_topic);
  EXPECT_EQ(sut.publish("orders.*", 1), errc::invalid_topic);
  auto sub = sut.subscribe<int>("orders.#.eu", [](int) {});
  ASSERT_FALSE(sub);
  EXPECT_EQ(sub.error(), errc::invalid_pattern);
  auto zero = sut.subscribe<int>(
      "a", [](int) {}, bounded(0, overload_policy::fail));
  EXPECT_EQ(zero.error(), errc::invalid_argument);
  EXPECT_EQ(sut.subscribe("a", caf::actor{}).error(), errc::invalid_argument);
}

TEST_F(event_bus_test,
       publishing_reaches_the_right_one_of_ten_thousand_subscriptions) {
  std::vector<int> hits(10000, 0);
  std::vector<subscription> subs;
  for (int i = 0; i < 10000; ++i) {
    auto s = sut.subscribe<int>("sensor." + std::to_string(i),
                                [&hits, i](int) { ++hits[i]; });
    ASSERT_TRUE(s);
    subs.push_back(std::move(*s));
  }
  EXPECT_EQ(sut.subscription_count(), 10001u); // plus the dead letters
  sut.publish("sensor.4242", 1);
  sut.publish("sensor.7", 1);
  run();
  int total = 0;
  for (int h : hits)
    total += h;
  EXPECT_EQ(total, 2);
  EXPECT_EQ(hits[4242], 1);
  EXPECT_EQ(hits[7], 1);
}

TEST_F(event_bus_test, dead_letters_nobody_listens_to_are_still_counted) {
  dead_sub.cancel();
  auto sub = sut.subscribe<int>(
      "full", [](int) {}, bounded(1, overload_policy::drop_newest));
  sut.publish("nobody.home", 1);
  sut.publish("full", 1);
  sut.publish("full", 2); // dropped
  run();
  EXPECT_EQ(sut.stats("nobody.home").dead_lettered, 1u);
  EXPECT_EQ(sut.stats("full").dead_lettered, 1u);
  EXPECT_EQ(sut.stats(dead_letter_topic).published, 2u);
  EXPECT_TRUE(dead.empty());
}

TEST_F(event_bus_test, publishing_after_close_fails) {
  sut.close();
  EXPECT_EQ(sut.publish("t", 1), errc::closed);
  EXPECT_FALSE(dead_sub.active());
}

TEST_F(event_bus_test,
       an_actor_cancelling_its_own_subscription_is_told_events_may_follow) {
  // The actor cannot wait for its own mailbox: cancel returns at once and
  // says that the event already sent (2) still comes; nothing else does.
  std::vector<int> got;
  std::vector<bool> acked;
  subscription sub;
  auto who = sys.spawn([&](caf::event_based_actor*) {
    return caf::behavior{
        [&](const std::string&, const caf::actor_addr&, int x) {
          got.push_back(x);
          if (x == 1)
            acked.push_back(sub.cancel());
        }};
  });
  subscription_options opts;
  opts.max_in_flight = 2;
  sub = std::move(*sut.subscribe("n", who, opts));
  for (int i = 1; i <= 5; ++i)
    sut.publish("n", i);
  run();
  EXPECT_EQ(acked, std::vector<bool>{false});
  EXPECT_EQ(got, (std::vector<int>{1, 2}));
  EXPECT_EQ(sut.stats("n").dead_lettered, 3u); // 3, 4, 5
  EXPECT_TRUE(sub.cancel()); // now handled: the acknowledgement came
}

} // namespace
