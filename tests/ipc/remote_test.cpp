#include "actorbus/ipc/remote.hpp"

#include "actorbus/ipc/frame.hpp"

#include "channel_peer.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <poll.h>
#include <string>
#include <unistd.h>
#include <vector>

using namespace actorbus::ipc;
using namespace std::chrono_literals;
using actorbus::ipc::testing::channel_peer;
using actorbus::ipc::testing::fork_child;
using actorbus::ipc::testing::read_within;
using actorbus::ipc::testing::unique_shm_name;
using actorbus::ipc::testing::wait_child;
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

// Child process: answers the first request it reads with 42, but first
// sends four frames of other kinds that carry the request's id.
int answer_after_stray_frames(channel ch) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto req = ch.receive(10s);
  if (!req)
    return 2;
  auto frame = decode_frame(*req, ch.max_frame());
  if (!frame || frame->kind != frame_kind::request)
    return 3;
  auto stray = encode_message(sys, caf::make_message(int32_t{-1}));
  auto reply = encode_message(sys, caf::make_message(int32_t{42}));
  if (!stray || !reply)
    return 4;
  std::vector<std::byte> out;
  for (auto kind : {frame_kind::message, frame_kind::raw, frame_kind::goodbye,
                    frame_kind::request}) {
    encode_frame(kind, frame->id, *stray, out);
    if (ch.send(out, 5s))
      return 5;
  }
  encode_frame(frame_kind::response, frame->id, *reply, out);
  if (ch.send(out, 5s))
    return 6;
  (void)ch.receive(30s); // until the parent goes away
  ::_exit(0);
}

// Most tests talk to a calculator exposed by a forked child (start()); this
// process's actor system starts only after the fork.
struct remote_test : ::testing::Test {
  unique_shm_name name{"remote"};
  watchdog guard{60s};
  std::optional<channel_peer> peer;
  caf::actor_system_config cfg;
  std::optional<caf::actor_system> sys;
  std::optional<caf::scoped_actor> self;
  caf::actor sut;

  // Forks the child running `body` at the other end of the channel, then
  // starts this process's actor system and connects `sut` to the child.
  void start(std::function<int(channel)> body = serve) {
    peer.emplace(name.str(), std::move(body));
    ASSERT_TRUE(peer->ok());
    sys.emplace(cfg);
    self.emplace(*sys);
    auto proxy = connect(*sys, peer->take_channel());
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
  ASSERT_NO_FATAL_FAILURE(start());
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
  ASSERT_NO_FATAL_FAILURE(start());
  caf::error got;
  (*self)
      ->request(sut, 5s, std::string{"explode"}, int32_t{1})
      .receive([&](int32_t) { FAIL() << "expected an error"; },
               [&](caf::error& err) { got = err; });
  EXPECT_EQ(got, caf::sec::invalid_argument) << sys->render(got);
}

TEST_F(remote_test, a_request_without_answer_times_out) {
  ASSERT_NO_FATAL_FAILURE(start());
  caf::error got;
  (*self)
      ->request(sut, 200ms, std::string{"ignore"}, int32_t{1})
      .receive([&](int32_t) { FAIL() << "expected a timeout"; },
               [&](caf::error& err) { got = err; });
  EXPECT_EQ(got, caf::sec::request_timeout) << sys->render(got);
}

TEST_F(remote_test, a_monitor_gets_a_down_message_when_the_peer_process_dies) {
  ASSERT_NO_FATAL_FAILURE(start());
  // One round trip first, so the child is certainly serving.
  (*self)
      ->request(sut, 5s, int32_t{1}, int32_t{1})
      .receive([](int32_t) {},
               [&](caf::error& err) { FAIL() << sys->render(err); });
  (*self)->monitor(sut);
  ::kill(peer->pid(), SIGKILL);
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

TEST_F(remote_test, frames_of_other_kinds_with_a_pending_id_do_not_answer_it) {
  ASSERT_NO_FATAL_FAILURE(start(answer_after_stray_frames));
  int32_t sum = 0;
  (*self)
      ->request(sut, 5s, int32_t{1}, int32_t{2})
      .receive([&](int32_t x) { sum = x; },
               [&](caf::error& err) {
                 FAIL() << "a stray frame answered: " << sys->render(err);
               });
  EXPECT_EQ(sum, 42);
}

// The owner's process shuts its actor system down and exits at once, as a
// program does at the end of main: its channel must be gone by then, and
// the other side must learn that it was closed, not that its owner died.
TEST_F(
    remote_test,
    an_owner_that_exits_right_after_shutdown_closes_and_unlinks_its_channel) {
  constexpr int rounds = 5;
  int left = 0;
  int dead = 0;
  for (int round = 0; round < rounds; ++round) {
    unique_shm_name nm{"exit"};
    int created[2];
    int opened[2];
    char c = 0;
    ASSERT_EQ(::pipe(created), 0);
    ASSERT_EQ(::pipe(opened), 0);
    auto owner = fork_child([&] {
      auto ch = channel::create(nm.str());
      if (!ch || ::write(created[1], "c", 1) != 1)
        return 1;
      if (!read_within(opened[0], &c, 1, 10s))
        return 2;
      {
        caf::actor_system_config child_cfg;
        caf::actor_system child_sys{child_cfg};
        auto proxy = connect(child_sys, std::move(*ch));
        if (!proxy)
          return 3;
        caf::anon_send_exit(*proxy, caf::exit_reason::user_shutdown);
      } // the actor system shuts down here
      return 0;
    });
    ASSERT_GT(owner, 0);
    ASSERT_TRUE(read_within(created[0], &c, 1, 10s));
    auto other_side = channel::open(nm.str(), 5s);
    ASSERT_TRUE(other_side) << describe(other_side.error());
    ASSERT_EQ(::write(opened[1], "o", 1), 1);
    EXPECT_EQ(wait_child(owner, 10s), 0);
    if (::access(("/dev/shm/" + nm.str()).c_str(), F_OK) == 0)
      ++left;
    auto got = other_side->receive(2s);
    ASSERT_FALSE(got);
    if (got.error() != errc::peer_closed) {
      EXPECT_EQ(got.error(), errc::peer_dead) << describe(got.error());
      ++dead;
    }
    for (int fd : {created[0], created[1], opened[0], opened[1]})
      ::close(fd);
  }
  EXPECT_EQ(left, 0) << left << " of " << rounds
                     << " owners left /dev/shm/<channel> behind";
  EXPECT_EQ(dead, 0) << "in " << dead << " of " << rounds
                     << " rounds the other side saw peer_dead";
}
