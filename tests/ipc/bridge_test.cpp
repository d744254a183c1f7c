#include "actorbus/ipc/bridge.hpp"

#include "actorbus/ipc/frame.hpp"
#include "actorbus/runtime/error.hpp"

#include "channel_peer.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/meta/type_name.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

using namespace actorbus;
using namespace actorbus::ipc;
using namespace std::chrono_literals;
using actorbus::ipc::testing::channel_peer;
using actorbus::ipc::testing::unique_shm_name;
using actorbus::ipc::testing::watchdog;

// A user type that crosses the bridge (registered on both sides).
struct quote {
  std::string symbol;
  int64_t cents = 0;
};

bool operator==(const quote& x, const quote& y) {
  return x.symbol == y.symbol && x.cents == y.cents;
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, quote& x) {
  return f(caf::meta::type_name("quote"), x.symbol, x.cents);
}

namespace {

// Subscriptions of the tests wait rather than drop: "0 lost" is asserted.
bus::subscription_options patient() {
  bus::subscription_options opts;
  opts.capacity = 4096;
  opts.policy = bus::overload_policy::block;
  opts.block_timeout = 20s;
  return opts;
}

void configure(caf::actor_system_config& cfg) {
  actorbus::runtime::add_error_renderers(cfg);
  cfg.add_message_type<quote>("quote");
}

// The child process: republishes every event on "data.#" it gets from the
// parent as "echo.<topic>" with the same value, and exports `exports` back,
// until the parent closes the bridge.
int echo_peer(channel ch, std::string exports) {
  caf::actor_system_config cfg;
  configure(cfg);
  caf::actor_system sys{cfg};
  bus::event_bus local{sys};
  // Subscribed before the bridge starts: events that arrive first are
  // not published to nobody.
  auto echo = local.subscribe<caf::message>(
      "data.#",
      [&](const bus::event<caf::message>& ev) {
        (void)local.publish_message("echo." + ev.topic(), ev.value(),
                                    caf::actor_addr{});
      },
      patient());
  if (!echo)
    return 3;
  std::promise<void> closed;
  bridge_options opts;
  opts.export_patterns = {std::move(exports)};
  opts.subscription = patient();
  opts.send_timeout = 20s;
  opts.on_down = [&](const caf::error&) { closed.set_value(); };
  auto bridge = bus_bridge::start(local, std::move(ch), std::move(opts));
  if (!bridge)
    return 2;
  auto done = closed.get_future().wait_for(30s) == std::future_status::ready;
  ::_exit(done ? 0 : 4); // skip the actor system's teardown in the child
}

// The child process of a broken peer: writes four frames that are no bridge
// events into the channel (garbage, a frame cut short, an event whose
// payload is cut short, an event on a reserved topic), then bridges its bus
// exporting "data.#" and publishes 42 on "data.after", until the parent
// closes the bridge.
int garbage_peer(channel ch) {
  caf::actor_system_config cfg;
  configure(cfg);
  caf::actor_system sys{cfg};
  auto event = [&](const std::string& topic) {
    auto payload = encode_message(sys, caf::make_message(topic, int32_t{7}));
    if (!payload)
      ::_exit(6);
    std::vector<std::byte> frame;
    encode_frame(frame_kind::message, 0, *payload, frame);
    return std::pair{*payload, frame};
  };
  std::vector<std::vector<std::byte>> bad;
  bad.emplace_back(16, std::byte{0xAB});
  auto [payload, frame] = event("data.cut");
  frame.resize(frame.size() - 3);
  bad.push_back(frame);
  payload.resize(payload.size() - 3);
  encode_frame(frame_kind::message, 0, payload, frame);
  bad.push_back(frame);
  bad.push_back(event("$dead-letters").second);
  for (auto& x : bad)
    if (ch.send(x, 5s))
      return 5;
  bus::event_bus local{sys};
  std::promise<void> closed;
  bridge_options opts;
  opts.export_patterns = {"data.#"};
  opts.on_down = [&](const caf::error&) { closed.set_value(); };
  auto bridge = bus_bridge::start(local, std::move(ch), std::move(opts));
  if (!bridge)
    return 2;
  if (local.publish("data.after", int32_t{42}))
    return 3;
  auto done = closed.get_future().wait_for(30s) == std::future_status::ready;
  ::_exit(done ? 0 : 4); // skip the actor system's teardown in the child
}

// Every dead letter of a bus; `done` is set at the `expected`-th.
struct dead_letters {
  std::mutex mtx;
  std::vector<bus::dead_letter> letters;
  size_t expected = 0;
  std::promise<void> done;

  void operator()(const bus::dead_letter& x) {
    std::lock_guard guard{mtx};
    letters.push_back(x);
    if (letters.size() == expected)
      done.set_value();
  }
};

// The first dead letter of a bus.
struct first_dead_letter {
  std::once_flag once;
  std::promise<bus::dead_letter> letter;

  void operator()(const bus::dead_letter& x) {
    std::call_once(once, [&] { letter.set_value(x); });
  }
};

// What a parent subscriber saw, for waiting on it from the test thread.
struct inbox {
  std::mutex mtx;
  std::vector<std::string> topics;
  std::vector<caf::message> values;
  std::vector<caf::actor_addr> publishers;
  std::promise<void> done;

  void add(const bus::event<caf::message>& ev) {
    std::lock_guard guard{mtx};
    topics.push_back(ev.topic());
    values.push_back(ev.value());
    publishers.push_back(ev.publisher());
  }
};

// Every test bridges this process's bus to a forked echo peer; this
// process's actor system starts only after the fork.
struct bridge_test : ::testing::Test {
  unique_shm_name name{"bridge"};
  watchdog guard{60s};
  std::optional<channel_peer> peer;
  caf::actor_system_config cfg;
  std::optional<caf::actor_system> sys;
  std::optional<bus::event_bus> bus;
  std::optional<bus_bridge> sut;

  bridge_test() {
    configure(cfg);
  }

  /// Forks the echo peer (exporting `child_exports`), then starts the
  /// actor system, the bus and a bridge exporting `exports`.
  void start(std::string child_exports, std::vector<std::string> exports,
             std::function<void(const caf::error&)> on_down = nullptr) {
    start_with(
        [child_exports](channel ch) {
          return echo_peer(std::move(ch), child_exports);
        },
        std::move(exports), std::move(on_down));
  }

  /// Same with `child` as the forked process's body.
  /// `before_bridge` runs once the bus exists and before the bridge reads
  /// anything, for subscriptions that must see the peer's first frames.
  void start_with(std::function<int(channel)> child,
                  std::vector<std::string> exports,
                  std::function<void(const caf::error&)> on_down = nullptr,
                  std::function<void()> before_bridge = nullptr) {
    peer.emplace(name.str(), std::move(child));
    ASSERT_TRUE(peer->ok());
    sys.emplace(cfg);
    bus.emplace(*sys);
    if (before_bridge)
      before_bridge();
    bridge_options opts;
    opts.export_patterns = std::move(exports);
    opts.subscription = patient();
    opts.send_timeout = 20s;
    opts.on_down = std::move(on_down);
    auto bridge = bus_bridge::start(*bus, peer->take_channel(), opts);
    ASSERT_TRUE(bridge) << describe(bridge.error());
    sut.emplace(std::move(*bridge));
  }

  /// Subscribes `box` to `pattern`; `box.done` is set when `last` arrives.
  bus::subscription collect(inbox& box, const std::string& pattern,
                            const std::string& last) {
    auto sub = bus->subscribe<caf::message>(
        pattern,
        [&box, last](const bus::event<caf::message>& ev) {
          box.add(ev);
          if (ev.topic() == last)
            box.done.set_value();
        },
        patient());
    EXPECT_TRUE(sub);
    return sub ? std::move(*sub) : bus::subscription{};
  }

  ~bridge_test() override {
    sut.reset();
    bus.reset();
    sys.reset();
  }
};

} // namespace

TEST_F(bridge_test, events_published_in_one_process_reach_the_other_in_order) {
  start("echo.#", {"data.#"});
  constexpr int64_t n = 100'000;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> out_of_order{0};
  std::promise<void> all;
  auto sub = bus->subscribe<int64_t>(
      "echo.data.seq",
      [&](int64_t x) {
        if (x != next.load())
          out_of_order.fetch_add(1);
        if (next.fetch_add(1) + 1 == n)
          all.set_value();
      },
      patient());
  ASSERT_TRUE(sub);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_FALSE(bus->publish("data.seq", i));
  ASSERT_EQ(all.get_future().wait_for(45s), std::future_status::ready)
      << next.load() << " of " << n << " arrived";
  EXPECT_EQ(out_of_order.load(), 0);
  auto st = sut->stats();
  EXPECT_EQ(st.sent, uint64_t{n});
  EXPECT_EQ(st.received, uint64_t{n});
  EXPECT_EQ(st.send_failed + st.refused + st.undecodable, 0u);
}

TEST_F(bridge_test,
       only_topics_matching_an_export_pattern_cross_with_typed_values) {
  start("echo.#", {"data.#"});
  inbox box;
  auto sub = collect(box, "echo.#", "echo.data.end");
  ASSERT_FALSE(bus->publish("data.quotes", quote{"ACME", 1234}));
  ASSERT_FALSE(bus->publish("other.numbers", int32_t{7}));
  ASSERT_FALSE(bus->publish("data.a.b", std::string{"text"}));
  ASSERT_FALSE(bus->publish("data.end", int32_t{0}));
  ASSERT_EQ(box.done.get_future().wait_for(10s), std::future_status::ready);
  std::lock_guard guard{box.mtx};
  EXPECT_EQ(box.topics,
            (std::vector<std::string>{"echo.data.quotes", "echo.data.a.b",
                                      "echo.data.end"}));
  ASSERT_EQ(box.values.size(), 3u);
  ASSERT_TRUE(box.values[0].match_elements<quote>());
  EXPECT_EQ(box.values[0].get_as<quote>(0), (quote{"ACME", 1234}));
  ASSERT_TRUE(box.values[1].match_elements<std::string>());
  EXPECT_EQ(box.values[1].get_as<std::string>(0), "text");
  for (auto& who : box.publishers)
    EXPECT_EQ(who, sut->remote_publisher());
  EXPECT_EQ(sut->stats().sent, 3u);
}

TEST_F(bridge_test, bridges_exporting_everything_both_ways_send_no_echo) {
  start("#", {"#"});
  inbox first;
  auto sub1 = collect(first, "echo.#", "echo.data.ping");
  ASSERT_FALSE(bus->publish("data.ping", int32_t{1}));
  ASSERT_EQ(first.done.get_future().wait_for(10s), std::future_status::ready);
  inbox second;
  auto sub2 = collect(second, "echo.#", "echo.data.pong");
  ASSERT_FALSE(bus->publish("data.pong", int32_t{2}));
  ASSERT_EQ(second.done.get_future().wait_for(10s), std::future_status::ready);
  // Had the child sent "data.ping" back, it would have arrived before its
  // echo of "data.pong" (one channel, one subscription in publish order).
  auto st = sut->stats();
  EXPECT_EQ(st.received, 2u);
  EXPECT_EQ(st.sent, 2u); // the echoes that arrived were not sent back
  std::lock_guard guard{second.mtx};
  EXPECT_EQ(second.topics, (std::vector<std::string>{"echo.data.pong"}));
}

TEST_F(bridge_test, an_event_whose_type_cannot_cross_becomes_a_dead_letter) {
  start("echo.#", {"data.#"});
  first_dead_letter letter;
  auto dead = bus->subscribe<bus::dead_letter>(
      bus::dead_letter_topic, [&](const bus::dead_letter& x) { letter(x); });
  ASSERT_TRUE(dead);
  // Unregistered: CAF cannot serialize it.
  ASSERT_FALSE(bus->publish("data.raw", std::vector<int16_t>{1, 2}));
  auto got = letter.letter.get_future();
  ASSERT_EQ(got.wait_for(10s), std::future_status::ready);
  auto x = got.get();
  EXPECT_EQ(x.topic, "data.raw");
  EXPECT_EQ(x.reason, bus::dead_letter_reason::handler_failed);
  EXPECT_NE(x.detail.find("serialize"), std::string::npos) << x.detail;
  EXPECT_EQ(sut->stats().send_failed, 1u);
  EXPECT_TRUE(sut->connected());
}

TEST_F(bridge_test, a_killed_peer_is_reported_within_500ms_and_nothing_hangs) {
  std::promise<caf::error> down;
  start("echo.#", {"data.#"},
        [&](const caf::error& err) { down.set_value(err); });
  inbox box;
  auto sub = collect(box, "echo.#", "echo.data.ready");
  ASSERT_FALSE(bus->publish("data.ready", int32_t{1}));
  ASSERT_EQ(box.done.get_future().wait_for(10s), std::future_status::ready);
  ::kill(peer->pid(), SIGKILL);
  auto killed_at = std::chrono::steady_clock::now();
  auto reason = down.get_future();
  ASSERT_EQ(reason.wait_for(5s), std::future_status::ready);
  EXPECT_LE(std::chrono::steady_clock::now() - killed_at, 500ms);
  EXPECT_EQ(reason.get(), errc::peer_dead);
  EXPECT_FALSE(sut->connected());
  EXPECT_EQ(sut->down_reason(), errc::peer_dead);
  // Later events are not lost silently: they become dead letters at once.
  first_dead_letter letter;
  auto dead = bus->subscribe<bus::dead_letter>(
      bus::dead_letter_topic, [&](const bus::dead_letter& x) { letter(x); });
  ASSERT_TRUE(dead);
  ASSERT_FALSE(bus->publish("data.after", int32_t{2}));
  auto got = letter.letter.get_future();
  ASSERT_EQ(got.wait_for(5s), std::future_status::ready);
  auto x = got.get();
  EXPECT_EQ(x.topic, "data.after");
  EXPECT_EQ(x.reason, bus::dead_letter_reason::handler_failed);
  EXPECT_NE(x.detail.find("peer_dead"), std::string::npos) << x.detail;
  sut->stop(); // returns: the watchdog fails the test otherwise
}

TEST_F(bridge_test,
       undecodable_frames_become_dead_letters_and_later_events_still_arrive) {
  // The peer writes its bad frames at once: subscribe before the bridge
  // reads them.
  dead_letters dead;
  dead.expected = 4;
  inbox box;
  std::optional<bus::subscription> dead_sub;
  std::optional<bus::subscription> sub;
  start_with(garbage_peer, {}, nullptr, [&] {
    auto x = bus->subscribe<bus::dead_letter>(
        bus::dead_letter_topic, [&](const bus::dead_letter& x) { dead(x); });
    if (x)
      dead_sub.emplace(std::move(*x));
    sub.emplace(collect(box, "data.#", "data.after"));
  });
  ASSERT_TRUE(dead_sub);
  ASSERT_EQ(box.done.get_future().wait_for(10s), std::future_status::ready);
  ASSERT_EQ(dead.done.get_future().wait_for(10s), std::future_status::ready);
  {
    std::lock_guard guard{box.mtx};
    ASSERT_EQ(box.topics, std::vector<std::string>{"data.after"});
    ASSERT_TRUE(box.values[0].match_elements<int32_t>());
    EXPECT_EQ(box.values[0].get_as<int32_t>(0), 42);
  }
  std::lock_guard guard{dead.mtx};
  std::vector<std::string> topics;
  for (auto& x : dead.letters) {
    topics.push_back(x.topic);
    EXPECT_EQ(x.reason, bus::dead_letter_reason::undecodable);
    EXPECT_NE(x.detail.find("undecodable frame"), std::string::npos)
        << x.detail;
    EXPECT_EQ(x.publisher, sut->remote_publisher());
    EXPECT_TRUE(x.event.match_elements<std::vector<uint8_t>>());
  }
  // Garbage, a cut frame and a cut payload carry no topic; the reserved
  // topic is named.
  EXPECT_EQ(topics, (std::vector<std::string>{"", "", "", "$dead-letters"}));
  EXPECT_EQ(dead.letters[0].event.get_as<std::vector<uint8_t>>(0),
            std::vector<uint8_t>(16, 0xAB));
  EXPECT_NE(dead.letters[1].detail.find("corrupt_frame"), std::string::npos)
      << dead.letters[1].detail;
  auto st = sut->stats();
  EXPECT_EQ(st.undecodable, 4u);
  EXPECT_EQ(st.received, 1u);
  EXPECT_TRUE(sut->connected());
}

TEST_F(bridge_test, an_invalid_export_pattern_is_refused) {
  start("echo.#", {"data.#"});
  for (auto bad : {"data..x", "$dead-letters"}) {
    bridge_options opts;
    opts.export_patterns = {bad};
    auto ch = channel::create(name.derived(0));
    ASSERT_TRUE(ch);
    auto other = bus_bridge::start(*bus, std::move(*ch), opts);
    ASSERT_FALSE(other) << bad;
    EXPECT_EQ(other.error(), errc::invalid_argument) << bad;
  }
}
