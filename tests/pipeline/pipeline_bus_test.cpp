#include "actorbus/pipeline/pipeline_bus.hpp"

#include "actorbus/bus/event_bus.hpp"
#include "actorbus/runtime/error.hpp"

#include "pipeline_fixture.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

using namespace actorbus::pipeline;
using actorbus::runtime::describe;
using actorbus::test::long_wait;
using namespace std::chrono_literals;

namespace {

namespace bus = actorbus::bus;

class pipeline_bus_test : public actorbus::test::pipeline_fixture {};

/// Counts the bus's dead letters (callbacks run in the bus's courier).
struct dead_letter_counter {
  explicit dead_letter_counter(bus::event_bus& b) {
    sub = b.subscribe<bus::dead_letter>(
        bus::dead_letter_topic, [this](const bus::dead_letter& x) {
          std::lock_guard<std::mutex> guard{mtx};
          reasons.push_back(x.reason);
          cv.notify_all();
        });
  }

  /// Waits until `n` dead letters arrived (threaded systems only).
  bool wait_for(std::size_t n) {
    std::unique_lock<std::mutex> guard{mtx};
    return cv.wait_for(guard, long_wait, [&] { return reasons.size() >= n; });
  }

  std::size_t count() {
    std::lock_guard<std::mutex> guard{mtx};
    return reasons.size();
  }

  std::mutex mtx;
  std::condition_variable cv;
  std::vector<bus::dead_letter_reason> reasons;
  caf::expected<bus::subscription> sub{caf::sec::none};
};

} // namespace

TEST_F(pipeline_bus_test, a_topic_sink_publishes_every_item_in_order) {
  bus::event_bus events{rt.system()};
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<int64_t> seen;
  auto sub = events.subscribe<int64_t>("numbers.*", [&](const int64_t& x) {
    std::lock_guard<std::mutex> guard{mtx};
    seen.push_back(x);
    cv.notify_all();
  });
  ASSERT_TRUE(sub);
  start_threaded(from_iota(0, 500)
                     .then("double", [](int64_t& x) { return 2 * x; },
                           {.parallelism = 2, .ordered = true})
                     .to(to_topic<int64_t>(events, "numbers.doubled")));
  auto report = sut->wait(long_wait);
  ASSERT_TRUE(report);
  ASSERT_TRUE(report->ok()) << describe(report->error);
  std::unique_lock<std::mutex> guard{mtx};
  ASSERT_TRUE(
      cv.wait_for(guard, long_wait, [&] { return seen.size() == 500; }));
  for (int64_t i = 0; i < 500; ++i)
    ASSERT_EQ(seen[i], 2 * i);
}

TEST_F(pipeline_bus_test, a_refused_publish_stops_the_run) {
  bus::event_bus events{rt.system()};
  start_threaded(from_iota(0, 10).to(to_topic<int64_t>(events, "bad..topic")));
  auto report = sut->wait(long_wait);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->error, errc::sink_failed);
  // The context says which publish the bus refused (and the bus's error).
  auto text = describe(report->error);
  EXPECT_EQ(text.rfind("pipeline.sink_failed: publish on 'bad..topic' "
                       "refused: ",
                       0),
            0u)
      << text;
}

TEST_F(pipeline_bus_test, a_topic_source_streams_published_events_in_order) {
  bus::event_bus events{rt.system()};
  collector<int64_t> out;
  // The publisher may wait for the source's courier, which a loaded or
  // sanitized machine may starve for longer than the default second.
  bus::subscription_options patient{.block_timeout = long_wait};
  start_threaded(
      from_topic<int64_t>(events, "numbers.*",
                          {.subscription = patient, .max_items = 2000})
          .then("double", [](int64_t& x) { return 2 * x; },
                {.parallelism = 2, .ordered = true})
          .to(out),
      {.batch = 16});
  for (int64_t i = 0; i < 2000; ++i)
    ASSERT_FALSE(
        events.publish(i % 2 == 0 ? "numbers.even" : "numbers.odd", i));
  auto report = sut->wait(long_wait);
  ASSERT_TRUE(report);
  ASSERT_TRUE(report->ok()) << describe(report->error);
  ASSERT_EQ(out.items().size(), 2000u);
  for (int64_t i = 0; i < 2000; ++i)
    ASSERT_EQ(out.items()[i], 2 * i);
  EXPECT_EQ(report->stages.front().out, 2000u);
  // The stream ended: the source's subscription is gone.
  EXPECT_EQ(events.subscription_count(), 0u);
}

TEST_F(pipeline_bus_test,
       a_stalled_pipeline_holds_publishers_to_the_subscription_bound) {
  bus::event_bus events{sys};
  bus::subscription_options sub{
      .capacity = 8, .policy = bus::overload_policy::fail, .max_in_flight = 4};
  collector<int64_t> out;
  start(
      from_topic<int64_t>(events, "ticks",
                          {.subscription = sub,
                           .end_when = [](const int64_t& x) { return x < 0; }})
          .to(out),
      {.batch = 4, .sink_credit = 4});
  auto sink = sut->actors()[1];
  std::vector<int64_t> accepted;
  std::size_t refused = 0;
  for (int64_t i = 0; i < 100; ++i) {
    if (auto err = events.publish("ticks", i))
      ++refused;
    else
      accepted.push_back(i);
    run_all_but(sink);
  }
  // The sink's credit plus the subscription's capacity (which counts the
  // events the source holds unacknowledged): that much is accepted while
  // the sink stalls, the rest is refused.
  EXPECT_EQ(accepted.size(), 4u + 8u);
  EXPECT_EQ(refused, 100u - accepted.size());
  EXPECT_EQ(sut->stats().front().out, 4u);
  EXPECT_LE(sut->stats().front().peak_queue_depth, 4u);
  // Unstalled, everything accepted arrives, in order, and -1 ends it.
  run();
  ASSERT_FALSE(events.publish("ticks", int64_t{-1}));
  auto report = finished();
  ASSERT_TRUE(report.ok()) << describe(report.error);
  EXPECT_EQ(out.items(), accepted);
}

TEST_F(pipeline_bus_test, a_topic_source_ends_after_its_idle_timeout) {
  bus::event_bus events{sys};
  collector<std::string> out;
  start(from_topic<std::string>(events, "log.#",
                                {.idle_timeout = caf::timespan{1s}})
            .to(out));
  ASSERT_FALSE(events.publish("log.app", std::string{"a"}));
  ASSERT_FALSE(events.publish("log.app.db", std::string{"b"}));
  run();
  run_after(caf::timespan{1s});
  EXPECT_FALSE(sut->done()); // an event came within the first period
  run_after(caf::timespan{1s});
  auto report = finished();
  ASSERT_TRUE(report.ok()) << describe(report.error);
  EXPECT_EQ(out.items(), (std::vector<std::string>{"a", "b"}));
}

TEST_F(pipeline_bus_test,
       events_of_another_type_become_dead_letters_of_the_bus) {
  bus::event_bus events{rt.system()};
  dead_letter_counter dead{events};
  ASSERT_TRUE(dead.sub);
  collector<int64_t> out;
  start_threaded(from_topic<int64_t>(events, "in.*", {.max_items = 2}).to(out));
  ASSERT_FALSE(events.publish("in.a", std::string{"not a number"}));
  ASSERT_FALSE(events.publish("in.a", int64_t{1}));
  ASSERT_FALSE(events.publish("in.b", int64_t{2}));
  auto report = sut->wait(long_wait);
  ASSERT_TRUE(report);
  ASSERT_TRUE(report->ok()) << describe(report->error);
  EXPECT_EQ(out.items(), (std::vector<int64_t>{1, 2}));
  ASSERT_TRUE(dead.wait_for(1));
  EXPECT_EQ(dead.count(), 1u);
  EXPECT_EQ(dead.reasons.front(), bus::dead_letter_reason::handler_failed);
}

TEST_F(pipeline_bus_test, cancelling_a_topic_source_dead_letters_what_it_held) {
  bus::event_bus events{sys};
  dead_letter_counter dead{events};
  ASSERT_TRUE(dead.sub);
  std::size_t consumed = 0;
  start(from_topic<int64_t>(
            events, "jobs",
            {.subscription = {.capacity = 64, .max_in_flight = 8}})
            .to([&](int64_t) { ++consumed; }),
        {.batch = 4, .sink_credit = 4});
  auto sink = sut->actors()[1];
  for (int64_t i = 0; i < 40; ++i) {
    ASSERT_FALSE(events.publish("jobs", i));
    run_all_but(sink);
  }
  sut->cancel();
  auto report = finished();
  EXPECT_EQ(report.error, errc::cancelled);
  // Every event is accounted for: passed into the pipeline (consumed, or
  // dropped in flight by the cancel like any item), or a dead letter (held
  // by the source, or still queued in the bus).
  auto passed = sut->stats().front().out;
  EXPECT_GE(passed, 4u);
  EXPECT_LE(consumed, passed);
  EXPECT_EQ(dead.count(), 40u - passed);
  EXPECT_EQ(events.subscription_count(), 1u); // only the dead-letter counter
}

TEST_F(pipeline_bus_test, an_invalid_topic_pattern_fails_the_run_at_start) {
  bus::event_bus events{sys};
  auto h = from_topic<int64_t>(events, "a..b").to([](int64_t) {}).run(sys);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error(), errc::source_failed);
}
