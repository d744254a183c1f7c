#include "actorbus/pipeline/pipeline.hpp"

#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "pipeline_fixture.hpp"

#include <caf/actor_registry.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace actorbus::pipeline;
using actorbus::actors::retry_policy;
using actorbus::runtime::describe;
using actorbus::test::long_wait;
using namespace std::chrono_literals;

namespace {

class pipeline_test : public actorbus::test::pipeline_fixture {};

} // namespace

TEST_F(pipeline_test, items_flow_through_every_stage_to_the_sink) {
  collector<std::string> out;
  start(from_iota(0, 1000)
            .then("double", [](int64_t& x) { return x * 2; })
            .then("text", [](int64_t& x) { return std::to_string(x); })
            .to(out),
        {.batch = 16});
  auto report = finished();
  EXPECT_TRUE(report.ok()) << describe(report.error);
  ASSERT_EQ(out.items().size(), 1000u);
  for (std::size_t i = 0; i < 1000; ++i)
    ASSERT_EQ(out.items()[i], std::to_string(2 * i));
  ASSERT_EQ(report.stages.size(), 4u);
  EXPECT_EQ(report.stages[0].out, 1000u);
  EXPECT_EQ(report.stages[1].name, "double");
  EXPECT_EQ(report.stages[1].in, 1000u);
  EXPECT_EQ(report.stages[1].out, 1000u);
  EXPECT_EQ(report.stages[3].in, 1000u);
  EXPECT_GT(report.stages[1].peak_queue_depth, 0u);
}

TEST_F(pipeline_test, a_filter_drops_items_and_the_stats_say_so) {
  collector<int64_t> out;
  start(from_iota(0, 100)
            .filter("even", [](const int64_t& x) { return x % 2 == 0; })
            .to(out),
        {.batch = 8});
  auto report = finished();
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(out.items().size(), 50u);
  EXPECT_EQ(report.stages[1].in, 100u);
  EXPECT_EQ(report.stages[1].out, 50u);
}

TEST_F(pipeline_test,
       an_ordered_stage_with_parallelism_4_and_random_delays_keeps_order) {
  collector<int64_t> out;
  std::atomic<int> concurrent{0};
  std::atomic<int> max_concurrent{0};
  start_threaded(
      from_iota(0, 2000)
          .then("jittery",
                [&, rng = std::minstd_rand{42}](int64_t& x) mutable {
                  auto now = ++concurrent;
                  auto seen = max_concurrent.load();
                  while (now > seen &&
                         !max_concurrent.compare_exchange_weak(seen, now))
                    ;
                  // Random work time scrambles the completion order.
                  std::this_thread::sleep_for(std::chrono::microseconds(
                      std::uniform_int_distribution<int>{0, 300}(rng)));
                  --concurrent;
                  return x;
                },
                {.parallelism = 4, .ordered = true})
          .to(out),
      {.batch = 1});
  auto report = sut->wait(long_wait);
  ASSERT_TRUE(report);
  ASSERT_TRUE(report->ok()) << describe(report->error);
  std::vector<int64_t> expected(2000);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(out.items(), expected);
  // The stage really ran items concurrently.
  EXPECT_GT(max_concurrent.load(), 1);
}

TEST_F(pipeline_test, an_unordered_parallel_stage_delivers_every_item) {
  collector<int64_t> out;
  start(from_iota(0, 500)
            .then("plus1", [](int64_t& x) { return x + 1; },
                  {.parallelism = 3, .ordered = false})
            .to(out),
        {.batch = 4});
  auto report = finished();
  ASSERT_TRUE(report.ok());
  auto got = out.items();
  std::sort(got.begin(), got.end());
  std::vector<int64_t> expected(500);
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(got, expected);
}

TEST_F(pipeline_test, a_stalled_sink_bounds_in_flight_items_to_the_credit) {
  std::size_t consumed = 0;
  start(from_iota(0, 100'000)
            .then("a", [](int64_t& x) { return x; }, {.buffer = 16})
            .then("b", [](int64_t& x) { return x; },
                  {.parallelism = 2, .buffer = 24})
            .to([&](int64_t) { ++consumed; }),
        {.batch = 4, .sink_credit = 8});
  auto actors = sut->actors();
  // Source, a, a's worker, b, b's two workers, sink, controller.
  ASSERT_EQ(actors.size(), 8u);
  run_all_but(actors[6]);
  auto st = sut->stats();
  EXPECT_EQ(consumed, 0u);
  // What the source let go is exactly what the credits allow: the buffers
  // of a and b plus the sink's credit; nothing more was produced.
  EXPECT_EQ(st[0].out, 16u + 24u + 8u);
  EXPECT_LE(st[1].peak_queue_depth, 16u);
  EXPECT_LE(st[2].peak_queue_depth, 24u);
  EXPECT_EQ(st[2].out, 8u);
  EXPECT_FALSE(sut->done());
  // Once the sink runs again, everything flows.
  auto report = finished();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(consumed, 100'000u);
}

TEST_F(pipeline_test, the_skip_policy_drops_failed_items_and_reports_them) {
  collector<int64_t> out;
  std::vector<std::string> reported;
  start(from_iota(0, 10)
            .then("no-threes",
                  [](int64_t& x) -> caf::expected<int64_t> {
                    if (x % 3 == 0)
                      return make_error(errc::item_failed, "multiple of three");
                    return x;
                  },
                  {.on_error = error_policy::skip()})
            .to(out),
        {.batch = 4, .on_error = [&](const item_error& e) {
           reported.push_back(e.stage + ": " + describe(e.error));
         }});
  auto report = finished();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(out.items(), (std::vector<int64_t>{1, 2, 4, 5, 7, 8}));
  EXPECT_EQ(report.stages[1].errors, 4u);
  ASSERT_EQ(reported.size(), 4u);
  EXPECT_EQ(reported[0], "no-threes: pipeline.item_failed: multiple of three");
}

TEST_F(pipeline_test, the_retry_policy_tries_again_after_the_delay) {
  collector<int64_t> out;
  std::map<int64_t, int> tries;
  start(from_iota(0, 4)
            .then("flaky",
                  [&](int64_t& x) -> int64_t {
                    // Item 2 fails twice, then succeeds.
                    if (x == 2 && ++tries[x] < 3)
                      throw std::runtime_error("flaky");
                    return x * 10;
                  },
                  {.on_error = error_policy::retry(3, caf::timespan{100ms})})
            .to(out),
        {.batch = 1});
  run();
  EXPECT_FALSE(sut->done());
  EXPECT_EQ(tries[2], 1);
  run_after(caf::timespan{99ms});
  EXPECT_EQ(tries[2], 1) << "retried before the delay";
  run_after(caf::timespan{1ms});
  EXPECT_EQ(tries[2], 2);
  run_after(caf::timespan{100ms});
  auto report = finished();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(out.items(), (std::vector<int64_t>{0, 10, 20, 30}));
  EXPECT_EQ(report.stages[1].retries, 2u);
  EXPECT_EQ(report.stages[1].errors, 0u);
}

TEST_F(pipeline_test, the_retry_policy_of_the_module_backs_off_exponentially) {
  collector<int64_t> out;
  int tries = 0;
  retry_policy backoff;
  backoff.attempts = 4;
  backoff.backoff.min = caf::timespan{100ms};
  backoff.backoff.multiplier = 2.0;
  start(from_iota(0, 1)
            .then("flaky",
                  [&](int64_t& x) -> int64_t {
                    if (++tries < 4)
                      throw std::runtime_error("not yet");
                    return x;
                  },
                  {.on_error = error_policy::retry(backoff)})
            .to(out));
  run();
  EXPECT_EQ(tries, 1);
  run_after(caf::timespan{100ms}); // first retry after 100 ms
  EXPECT_EQ(tries, 2);
  run_after(caf::timespan{199ms}); // the second one 200 ms later
  EXPECT_EQ(tries, 2);
  run_after(caf::timespan{1ms});
  EXPECT_EQ(tries, 3);
  run_after(caf::timespan{400ms}); // the third one 400 ms later
  auto report = finished();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(tries, 4);
  EXPECT_EQ(out.items(), (std::vector<int64_t>{0}));
  EXPECT_EQ(report.stages[1].retries, 3u);
}

TEST_F(pipeline_test, an_invalid_retry_policy_is_rejected_at_start) {
  retry_policy backoff;
  backoff.attempts = 0;
  auto h = from_iota(0, 1)
               .then("x", [](int64_t& x) { return x; },
                     {.on_error = error_policy::retry(backoff)})
               .to([](int64_t) {})
               .run(sys);
  EXPECT_FALSE(h);
}

TEST_F(pipeline_test, an_item_that_exhausts_its_retries_goes_to_dead_letters) {
  collector<int64_t> out;
  start(from_iota(0, 6)
            .then("odd-fails",
                  [](int64_t& x) -> int64_t {
                    if (x % 2 == 1)
                      throw std::runtime_error("odd");
                    return x;
                  },
                  {.on_error = error_policy::retry(2, caf::timespan{0})})
            .to(out),
        {.batch = 2});
  auto report = finished();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(out.items(), (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(report.stages[1].retries, 3u);
  EXPECT_EQ(report.stages[1].dead_letters, 3u);
  ASSERT_EQ(report.dead_letters.size(), 3u);
  EXPECT_EQ(std::any_cast<int64_t>(report.dead_letters[1].item), 3);
  EXPECT_EQ(report.dead_letters[1].stage, "odd-fails");
  EXPECT_EQ(describe(report.dead_letters[1].error),
            "pipeline.item_failed: odd");
}

TEST_F(pipeline_test, the_dead_letter_policy_hands_items_to_the_callback) {
  std::vector<std::string> dead;
  std::size_t delivered = 0;
  start(from_vector<std::string>({"1", "x", "3", "y"})
            .then("parse", [](std::string& s) { return std::stoi(s); },
                  {.on_error = error_policy::dead_letter()})
            .to([&](int) { ++delivered; }),
        {.on_dead_letter = [&](failed_item d) {
          dead.push_back(std::any_cast<std::string>(d.item));
        }});
  auto report = finished();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(delivered, 2u);
  EXPECT_EQ(dead, (std::vector<std::string>{"x", "y"}));
  EXPECT_TRUE(report.dead_letters.empty());
}

TEST_F(pipeline_test, the_abort_policy_stops_upstream_and_downstream) {
  std::size_t delivered = 0;
  start(from_iota(0, 1'000'000)
            .then("boom",
                  [](int64_t& x) -> int64_t {
                    if (x == 100)
                      throw std::runtime_error("item 100 is bad");
                    return x;
                  },
                  {.on_error = error_policy::abort()})
            .then("after", [](int64_t& x) { return x; })
            .to([&](int64_t) { ++delivered; }),
        {.batch = 10});
  auto report = finished();
  EXPECT_EQ(report.error, errc::item_failed);
  EXPECT_EQ(describe(report.error), "pipeline.item_failed: item 100 is bad");
  EXPECT_EQ(report.stages[1].errors, 1u);
  // The source stopped long before the end of its range, and nothing after
  // the failing item's batch reached the sink.
  EXPECT_LT(report.stages[0].out, 1'000u);
  EXPECT_LE(delivered, 100u);
  EXPECT_EQ(sys.registry().running(), 0u);
}

TEST_F(pipeline_test, cancelling_mid_flight_leaves_no_actor_running) {
  auto before = sys.registry().running();
  std::size_t delivered = 0;
  start(from_iota(0, 1'000'000)
            .then("a", [](int64_t& x) { return x; }, {.parallelism = 2})
            .then("b", [](int64_t& x) { return x; })
            .to([&](int64_t) { ++delivered; }),
        {.batch = 8});
  EXPECT_GT(sys.registry().running(), before + 5);
  // Let some items through, then cancel with batches still in flight.
  for (int i = 0; i < 200 && sched.try_run_once(); ++i)
    ;
  EXPECT_GT(sut->stats()[0].out, 0u);
  sut->cancel();
  auto report = finished();
  EXPECT_EQ(report.error, errc::cancelled);
  EXPECT_LT(delivered, 1'000'000u);
  EXPECT_TRUE(sut->actors().empty());
  EXPECT_EQ(sys.registry().running(), before);
}

TEST_F(pipeline_test, cancelling_a_threaded_run_completes_it_promptly) {
  std::atomic<std::size_t> delivered{0};
  start_threaded(
      from_iota(0, 1'000'000'000)
          .then("a", [](int64_t& x) { return x; }, {.parallelism = 2})
          .to([&](int64_t) { ++delivered; }));
  EXPECT_EQ(sut->wait(caf::timespan{1ms}).error(), caf::sec::request_timeout);
  sut->cancel();
  auto report = sut->wait(long_wait);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->error, errc::cancelled);
  EXPECT_TRUE(sut->actors().empty());
}

TEST_F(pipeline_test, a_deadline_stops_the_run_on_time) {
  start(
      from_iota(0, 100)
          .then("slow",
                [](int64_t& x) -> caf::expected<int64_t> {
                  if (x == 50)
                    return make_error(errc::item_failed, "later");
                  return x;
                },
                // Item 50 retries every second, practically forever.
                {.on_error = error_policy::retry(1'000'000, caf::timespan{1s})})
          .to([](int64_t) {}),
      {.batch = 10, .deadline = caf::timespan{5s}});
  run();
  for (int i = 1; i < 5; ++i) {
    run_after(caf::timespan{1s});
    EXPECT_FALSE(sut->done()) << "stopped after " << i << " s";
    EXPECT_EQ(sut->stats()[1].retries, static_cast<uint64_t>(i));
  }
  run_after(caf::timespan{1s});
  auto report = finished();
  EXPECT_EQ(report.error, errc::deadline_exceeded);
  EXPECT_EQ(sys.registry().running(), 0u);
}

TEST_F(pipeline_test, a_throwing_source_fails_the_run_with_its_message) {
  int64_t next = 0;
  start(from_generator<int64_t>([&]() -> std::optional<int64_t> {
          if (next == 3)
            throw std::runtime_error("feed broke");
          return next++;
        }).to([](int64_t) {}),
        {.batch = 1});
  auto report = finished();
  EXPECT_EQ(report.error, errc::source_failed);
  EXPECT_EQ(describe(report.error), "pipeline.source_failed: feed broke");
}

TEST_F(pipeline_test, a_missing_file_is_a_clear_error) {
  auto h =
      from_lines("/nonexistent/access.log").to([](std::string) {}).run(sys);
  ASSERT_FALSE(h);
  EXPECT_EQ(describe(h.error()),
            "pipeline.source_failed: cannot open '/nonexistent/access.log'");
}

TEST_F(pipeline_test, bad_options_are_rejected) {
  auto h = from_iota(0, 1)
               .then("x", [](int64_t& x) { return x; }, {.parallelism = 0})
               .to([](int64_t) {})
               .run(sys);
  ASSERT_FALSE(h);
  EXPECT_EQ(describe(h.error()), "caf.invalid_argument: "
                                 "stage_options.parallelism: must be at least "
                                 "1 (stage 'x')");
  auto h2 = from_iota(0, 1).to([](int64_t) {}).run(sys, {.batch = 0});
  ASSERT_FALSE(h2);
  EXPECT_EQ(describe(h2.error()),
            "caf.invalid_argument: run_options.batch: must be at least 1");
}

TEST_F(pipeline_test, a_throwing_sink_aborts_the_run) {
  start(from_iota(0, 100).to([](int64_t x) {
    if (x == 5)
      throw std::runtime_error("disk full");
  }));
  auto report = finished();
  EXPECT_EQ(report.error, errc::sink_failed);
  EXPECT_EQ(describe(report.error), "pipeline.sink_failed: disk full");
}

TEST_F(pipeline_test, a_million_items_pass_three_stages_with_none_lost) {
  std::atomic<uint64_t> count{0};
  std::atomic<int64_t> sum{0};
  start_threaded(from_iota(0, 1'000'000)
                     .then("inc", [](int64_t& x) { return x + 1; })
                     .then("twice", [](int64_t& x) { return 2 * x; },
                           {.parallelism = 2, .ordered = false})
                     .then("dec", [](int64_t& x) { return x - 1; })
                     .to([&](int64_t x) {
                       count.fetch_add(1, std::memory_order_relaxed);
                       sum.fetch_add(x, std::memory_order_relaxed);
                     }),
                 {.batch = 256});
  auto report = sut->wait(long_wait);
  ASSERT_TRUE(report);
  ASSERT_TRUE(report->ok()) << describe(report->error);
  EXPECT_EQ(count.load(), 1'000'000u);
  // sum of 2(x+1)-1 for x in [0, 1e6) = 2 * (n(n+1)/2) - n = n^2
  EXPECT_EQ(sum.load(), int64_t{1'000'000} * 1'000'000);
  for (auto& s : report->stages) {
    if (s.name != "source") {
      EXPECT_EQ(s.in, 1'000'000u) << s.name;
    }
  }
}
