#include "actorbus/ipc/remote.hpp"

#include "channel_peer.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>

using namespace actorbus::ipc;
using namespace std::chrono_literals;
using actorbus::ipc::testing::channel_peer;
using actorbus::ipc::testing::unique_shm_name;
using actorbus::ipc::testing::watchdog;

namespace {

// The exposed actor: adds, greets, and never answers "ignore". It takes an
// argument on purpose: under ASan+UBSan an argument-less function actor
// starts up to seconds late (tests/support/timing.hpp), longer than the
// child's 300 ms request timeout.
caf::behavior calculator(caf::event_based_actor* self, std::string greeting) {
  return {
      [](int32_t a, int32_t b) { return a + b; },
      [greeting](const std::string& who) { return greeting + who; },
      [self](const std::string& cmd, int32_t) -> caf::result<int32_t> {
        if (cmd == "ignore")
          return self->make_response_promise<int32_t>(); // never delivered
        return caf::sec::invalid_argument;
      },
  };
}

// Child process: exposes a calculator until the parent goes away.
int serve(channel ch) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto calc = sys.spawn(calculator, std::string{"hello, "});
  remote_options opts;
  opts.request_timeout = 300ms; // unanswered requests fail fast in tests
  auto bridge = expose(sys, std::move(ch), calc, opts);
  if (!bridge)
    return 2;
  caf::scoped_actor self{sys};
  self->monitor(*bridge);
  int rc = 3;
  self->receive([&](caf::down_msg&) { rc = 0; }, caf::after(30s) >> [] {});
  ::_exit(rc); // skip the actor system's teardown in the child
}

// Every test talks to a calculator exposed by a forked child; this
// process's actor system starts only after the fork.
struct remote_test : ::testing::Test {
  unique_shm_name name{"remote"};
  watchdog guard{60s};
  channel_peer peer{name.str(), serve};
  caf::actor_system_config cfg;
  std::optional<caf::actor_system> sys;
  std::optional<caf::scoped_actor> self;
  caf::actor sut;

  void SetUp() override {
    ASSERT_TRUE(peer.ok());
    sys.emplace(cfg);
    self.emplace(*sys);
    auto proxy = connect(*sys, peer.take_channel());
    ASSERT_TRUE(proxy) << describe(proxy.error());
    sut = std::move(*proxy);
  }

  void TearDown() override {
    sut = nullptr;
    self.reset();
  }
};

} // namespace

TEST_F(remote_test, a_request_to_an_actor_in_another_process_gets_its_reply) {
  int32_t sum = 0;
  (*self)
      ->request(sut, 5s, int32_t{20}, int32_t{22})
      .receive([&](int32_t x) { sum = x; },
               [&](caf::error& err) { FAIL() << sys->render(err); });
  EXPECT_EQ(sum, 42);
  std::string greeting;
  (*self)
      ->request(sut, 5s, std::string{"actorbus"})
      .receive([&](const std::string& x) { greeting = x; },
               [&](caf::error& err) { FAIL() << sys->render(err); });
  EXPECT_EQ(greeting, "hello, actorbus");
}

TEST_F(remote_test, an_error_reply_crosses_the_process_boundary) {
  caf::error got;
  (*self)
      ->request(sut, 5s, std::string{"explode"}, int32_t{1})
      .receive([&](int32_t) { FAIL() << "expected an error"; },
               [&](caf::error& err) { got = err; });
  EXPECT_EQ(got, caf::sec::invalid_argument) << sys->render(got);
}

TEST_F(remote_test, a_request_without_answer_times_out) {
  caf::error got;
  (*self)
      ->request(sut, 200ms, std::string{"ignore"}, int32_t{1})
      .receive([&](int32_t) { FAIL() << "expected a timeout"; },
               [&](caf::error& err) { got = err; });
  EXPECT_EQ(got, caf::sec::request_timeout) << sys->render(got);
}

TEST_F(remote_test, a_monitor_gets_a_down_message_when_the_peer_process_dies) {
  // One round trip first, so the child is certainly serving.
  (*self)
      ->request(sut, 5s, int32_t{1}, int32_t{1})
      .receive([](int32_t) {},
               [&](caf::error& err) { FAIL() << sys->render(err); });
  (*self)->monitor(sut);
  ::kill(peer.pid(), SIGKILL);
  auto killed_at = std::chrono::steady_clock::now();
  caf::error reason;
  bool down = false;
  (*self)->receive(
      [&](caf::down_msg& dm) {
        down = true;
        reason = dm.reason;
      },
      caf::after(5s) >> [] {});
  ASSERT_TRUE(down);
  EXPECT_LE(std::chrono::steady_clock::now() - killed_at, 500ms);
  EXPECT_EQ(reason, errc::peer_dead) << describe(reason);
}
