#include "actorbus/actors/retry.hpp"

#include "actorbus/runtime/error.hpp"

#include "deterministic_fixture.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

using namespace actorbus::actors;
using namespace std::chrono_literals;

namespace {

/// An actor that fails its first `failures` requests with `err`, then
/// answers `x * 2`; it counts every request in `*seen`.
caf::behavior flaky(caf::event_based_actor*, int failures, caf::error err,
                    std::shared_ptr<int> seen) {
  return {[=](int x) -> caf::result<int> {
    if ((*seen)++ < failures)
      return err;
    return x * 2;
  }};
}

class retry_test : public actorbus::test::deterministic_fixture {
protected:
  retry_test() {
    sut.attempts = 4;
    sut.backoff = {.min = 100ms, .max = 300ms, .multiplier = 2.0};
  }

  /// Starts a client actor that sends `x` to `dest` under `sut` and stores
  /// the outcome in `outcome`.
  void start_client(caf::actor dest, int x) {
    client = sys.spawn(
        [this, dest](caf::event_based_actor* self, int x) {
          retry_request<int>(
              self, dest, sut, 1s,
              [this](caf::expected<int> r) {
                ++done_calls;
                outcome = std::move(r);
              },
              x);
        },
        x);
  }

  retry_policy sut;
  caf::actor client;
  int done_calls = 0;
  std::optional<caf::expected<int>> outcome;
};

TEST_F(retry_test, pauses_between_attempts_follow_the_backoff) {
  sut.attempts = 100;
  auto err = caf::make_error(caf::sec::runtime_error);
  EXPECT_EQ(sut.next(1, err, 0ms), caf::timespan{100ms});
  EXPECT_EQ(sut.next(2, err, 0ms), caf::timespan{200ms});
  EXPECT_EQ(sut.next(3, err, 0ms), caf::timespan{300ms});
  EXPECT_EQ(sut.next(50, err, 0ms), caf::timespan{300ms}) << "capped at max";
}

TEST_F(retry_test, jittered_pauses_stay_within_their_bounds) {
  sut.backoff.jitter = 0.25;
  auto err = caf::make_error(caf::sec::runtime_error);
  bool below = false;
  bool above = false;
  for (int i = 0; i < 1000; ++i) {
    auto d = sut.next(2, err, 0ms);
    ASSERT_TRUE(d);
    ASSERT_GE(*d, caf::timespan{150ms});
    ASSERT_LE(*d, caf::timespan{250ms});
    below |= *d < caf::timespan{200ms};
    above |= *d > caf::timespan{200ms};
  }
  EXPECT_TRUE(below && above) << "jitter spreads both ways";
}

TEST_F(retry_test, an_invalid_policy_is_rejected_with_a_reason) {
  sut.attempts = 0;
  EXPECT_EQ(sut.validate(), caf::sec::invalid_argument);
  EXPECT_EQ(actorbus::runtime::describe(sut.validate()),
            "caf.invalid_argument: retry_policy.attempts: must be at least 1");
  sut.attempts = 1;
  sut.backoff.jitter = 1.5;
  EXPECT_EQ(actorbus::runtime::describe(sut.validate()),
            "caf.invalid_argument: retry_policy.backoff.jitter: must lie in "
            "[0, 1]");
  sut.backoff.jitter = 0;
  sut.backoff.multiplier = 0.5;
  EXPECT_EQ(sut.validate(), caf::sec::invalid_argument);
  int calls = 0;
  auto r = retry_invoke(sut, [&]() -> caf::expected<int> { return ++calls; });
  EXPECT_EQ(r.error(), caf::sec::invalid_argument);
  EXPECT_EQ(calls, 0) << "an invalid policy never runs the operation";
}

TEST_F(retry_test, an_operation_is_retried_until_it_succeeds) {
  sut.backoff.min = 0ms;
  int calls = 0;
  auto r = retry_invoke(sut, [&]() -> caf::expected<int> {
    if (++calls < 3)
      return caf::make_error(caf::sec::request_timeout);
    return 42;
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(calls, 3);
}

TEST_F(retry_test, the_last_error_is_returned_once_attempts_are_used_up) {
  sut.backoff.min = 0ms;
  int calls = 0;
  auto r = retry_invoke(sut, [&]() -> caf::expected<int> {
    ++calls;
    return caf::make_error(calls < 4 ? caf::sec::request_timeout
                                     : caf::sec::runtime_error);
  });
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(r.error(), caf::sec::runtime_error);
}

TEST_F(retry_test, a_non_retryable_error_is_returned_at_once) {
  sut.backoff.min = 0ms;
  sut.retry_if = [](const caf::error& e) {
    return e == caf::sec::request_timeout;
  };
  int calls = 0;
  auto r = retry_invoke(sut, [&]() -> caf::expected<int> {
    ++calls;
    return caf::make_error(caf::sec::invalid_argument);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(r.error(), caf::sec::invalid_argument);
}

TEST_F(retry_test, no_retry_starts_after_the_deadline) {
  // Pauses 100 + 200 = 300 ms; the third retry would start at 600 ms.
  sut.attempts = 10;
  sut.backoff.max = 10s;
  sut.deadline = 500ms;
  EXPECT_EQ(sut.next(1, caf::sec::runtime_error, 0ms), caf::timespan{100ms});
  EXPECT_EQ(sut.next(2, caf::sec::runtime_error, 100ms), caf::timespan{200ms});
  EXPECT_EQ(sut.next(3, caf::sec::runtime_error, 300ms), std::nullopt);
}

TEST_F(retry_test, an_actor_request_is_retried_on_virtual_time) {
  auto seen = std::make_shared<int>(0);
  auto dest =
      sys.spawn(flaky, 2, caf::make_error(caf::sec::runtime_error), seen);
  start_client(dest, 21);
  run();
  EXPECT_EQ(*seen, 1);
  EXPECT_FALSE(outcome);
  run_after(99ms);
  EXPECT_EQ(*seen, 1) << "no retry before the first delay";
  run_after(1ms);
  EXPECT_EQ(*seen, 2);
  run_after(199ms);
  EXPECT_EQ(*seen, 2) << "the second delay is twice the first";
  run_after(1ms);
  EXPECT_EQ(*seen, 3);
  ASSERT_TRUE(outcome);
  ASSERT_TRUE(*outcome);
  EXPECT_EQ(**outcome, 42);
  EXPECT_EQ(done_calls, 1);
}

TEST_F(retry_test, an_actor_request_gives_up_with_the_last_error) {
  auto seen = std::make_shared<int>(0);
  auto dest =
      sys.spawn(flaky, 100, caf::make_error(caf::sec::runtime_error), seen);
  start_client(dest, 1);
  run();
  for (int i = 0; i < 10 && !outcome; ++i)
    run_after(1s);
  EXPECT_EQ(*seen, 4);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->error(), caf::sec::runtime_error);
  EXPECT_EQ(done_calls, 1);
}

TEST(retry_call_test, a_thread_retries_a_request_to_an_actor) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto seen = std::make_shared<int>(0);
  auto dest =
      sys.spawn(flaky, 2, caf::make_error(caf::sec::runtime_error), seen);
  retry_policy sut;
  sut.backoff.min = 1ms;
  auto r = retry_call<int>(sys, dest, sut, 5s, 5);
  ASSERT_TRUE(r) << sys.render(r.error());
  EXPECT_EQ(*r, 10);
  EXPECT_EQ(*seen, 3);
  caf::anon_send_exit(dest, caf::exit_reason::user_shutdown);
}

} // namespace
