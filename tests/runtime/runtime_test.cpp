#include "actorbus/runtime/runtime.hpp"

#include "actorbus/runtime/call.hpp"

#include "timing.hpp"

#include <caf/after.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <latch>

using namespace actorbus::runtime;
using namespace std::chrono_literals;
using actorbus::test::slack;

// The argument-less `echo` and `stubborn` start late under ASan+UBSan
// (timing.hpp).
using actorbus::test::patience;

namespace {

caf::behavior echo() {
  return {[](int x) { return x; }};
}

// Traps exit messages and ignores them: only a kill stops it.
caf::behavior stubborn(caf::event_based_actor* self) {
  self->set_exit_handler([](caf::exit_msg&) {});
  return {[](int x) { return x; }};
}

// Records that it saw the shutdown request, then exits normally.
caf::behavior polite(caf::event_based_actor* self,
                     std::shared_ptr<std::promise<caf::error>> reason) {
  self->set_exit_handler([self, reason](caf::exit_msg& msg) {
    reason->set_value(msg.reason);
    self->quit(msg.reason);
  });
  return {[](int x) { return x; }};
}

class runtime_test : public ::testing::Test {
protected:
  runtime_config fast_shutdown() {
    runtime_config cfg;
    cfg.set("actorbus.shutdown-timeout", caf::timespan{200ms});
    return cfg;
  }

  runtime sut{fast_shutdown()};
};

} // namespace

TEST_F(runtime_test, a_named_actor_answers_a_request) {
  auto worker = sut.spawn(echo);
  ASSERT_TRUE(worker);
  ASSERT_FALSE(sut.names().put("echo", *worker));
  auto res = call<int>(sut.system(), sut.names().get("echo"), patience, 7);
  ASSERT_TRUE(res);
  EXPECT_EQ(*res, 7);
}

TEST_F(runtime_test, shutdown_asks_actors_to_exit_with_user_shutdown) {
  auto reason = std::make_shared<std::promise<caf::error>>();
  auto fut = reason->get_future();
  auto hdl = sut.spawn(polite, reason);
  ASSERT_TRUE(hdl);
  auto report = sut.shutdown(2s);
  ASSERT_EQ(fut.wait_for(0s), std::future_status::ready);
  EXPECT_EQ(fut.get(), caf::exit_reason::user_shutdown);
  EXPECT_EQ(report.exited, 1u);
  EXPECT_EQ(report.killed, 0u);
  EXPECT_EQ(report.abandoned, 0u);
}

TEST_F(runtime_test, shutdown_with_a_stubborn_actor_honours_its_deadline) {
  // Handles keep the actors alive: CAF collects unreferenced actors.
  auto hard = sut.spawn(stubborn);
  auto soft = sut.spawn(echo);
  ASSERT_TRUE(hard && soft);
  // Both run and answer before the shutdown begins: the deadline then
  // measures the shutdown alone, not how long the actors took to start.
  for (const auto& hdl : {*hard, *soft}) {
    auto res = call<int>(sut.system(), hdl, patience, 1);
    ASSERT_TRUE(res) << caf::to_string(res.error());
  }
  auto deadline = slack(150ms);
  auto report = sut.shutdown(deadline);
  EXPECT_EQ(report.exited, 1u);
  EXPECT_EQ(report.killed, 1u);
  EXPECT_EQ(report.abandoned, 0u);
  EXPECT_GE(report.elapsed, deadline);
  // Deadline plus the kill grace period, with room for a loaded machine.
  EXPECT_LT(report.elapsed, deadline + 200ms + slack(1s));
  EXPECT_EQ(sut.tracked(), 0u);
}

TEST_F(runtime_test, an_actor_blocking_its_thread_is_abandoned_not_waited_for) {
  std::latch release{1};
  std::promise<void> entered;
  auto blocker = sut.spawn([&](caf::event_based_actor*) -> caf::behavior {
    return {[&](int) {
      entered.set_value();
      release.wait(); // a handler that never returns on its own
    }};
  });
  ASSERT_TRUE(blocker);
  caf::anon_send(*blocker, 1);
  entered.get_future().wait();
  auto report = sut.shutdown(100ms);
  EXPECT_EQ(report.abandoned, 1u);
  EXPECT_LT(report.elapsed, 100ms + 200ms + 200ms + 1s);
  release.count_down();
  // Once its handler returns, the abandoned actor finishes.
  EXPECT_TRUE(runtime::await_abandoned(10s));
}

TEST_F(runtime_test, nothing_is_spawned_once_shutdown_began) {
  sut.shutdown(100ms);
  EXPECT_FALSE(sut.accepting());
  auto res = sut.spawn(echo);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), caf::sec::runtime_error);
}

TEST_F(runtime_test, shutdown_is_idempotent) {
  auto hard = sut.spawn(stubborn);
  ASSERT_TRUE(hard);
  auto first = sut.shutdown(50ms);
  auto second = sut.shutdown(50ms);
  EXPECT_EQ(first.killed, second.killed);
  EXPECT_EQ(first.elapsed, second.elapsed);
}

TEST_F(runtime_test, names_are_dropped_at_shutdown) {
  auto worker = sut.spawn(echo);
  ASSERT_FALSE(sut.names().put("echo", *worker));
  sut.shutdown(100ms);
  EXPECT_EQ(sut.names().size(), 0u);
}

TEST_F(runtime_test, tracked_actors_leave_the_count_when_they_exit) {
  caf::scoped_actor self{sut.system()};
  auto worker = sut.system().spawn(echo);
  // CAF runs exit hooks newest first: monitoring before tracking makes the
  // untrack hook run before the down message is sent.
  self->monitor(worker);
  sut.track(worker);
  EXPECT_EQ(sut.tracked(), 1u);
  caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
  self->receive([](caf::down_msg&) {},
                caf::after(patience) >> [] { FAIL() << "no down message"; });
  EXPECT_EQ(sut.tracked(), 0u);
}
