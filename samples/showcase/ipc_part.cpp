// Showcase part: a second process. A forked worker sums the numbers it gets
// over a shared-memory channel; then it is killed with SIGKILL and the
// showcase sees the death as an error, without hanging. Then the bus bridge:
// this program, re-executed in a worker role under a process actor, bridges
// its own bus to ours; an order published here is priced there and the
// price comes back as an event.

#include "actorbus/bus/event_bus.hpp"
#include "actorbus/ipc/bridge.hpp"
#include "actorbus/ipc/channel.hpp"
#include "actorbus/ipc/process.hpp"

#include "showcase.hpp"

#include <caf/scoped_actor.hpp>

#include <fmt/core.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace bus = actorbus::bus;
namespace ipc = actorbus::ipc;
using namespace std::chrono_literals;

// The worker role of the bridge peer, and where it finds the channel name.
constexpr const char* peer_role = "showcase-bridge-peer";
constexpr const char* peer_channel_env = "ACTORBUS_SHOWCASE_BRIDGE";
constexpr int64_t cents_per_item = 250;

// The worker: replies to every frame of int64 values with their sum.
[[noreturn]] void worker(const std::string& name) {
  auto ch = ipc::channel::open(name, 2s);
  if (!ch)
    ::_exit(1);
  std::vector<std::byte> in;
  for (;;) {
    if (ch->receive(in, 2s))
      ::_exit(0);
    int64_t sum = 0;
    for (size_t i = 0; i + sizeof(int64_t) <= in.size(); i += sizeof(int64_t)) {
      int64_t x = 0;
      std::memcpy(&x, in.data() + i, sizeof(x));
      sum += x;
    }
    if (ch->send(std::as_bytes(std::span{&sum, 1}), 2s))
      ::_exit(0);
  }
}

int channel_demo() {
  auto name = "actorbus-showcase-" + std::to_string(::getpid());
  auto ch = ipc::channel::create(name);
  if (!ch) {
    fmt::print("ipc: {}\n", ipc::describe(ch.error()));
    return 1;
  }
  auto pid = ::fork();
  if (pid < 0)
    return 1;
  if (pid == 0)
    worker(name);
  std::vector<int64_t> numbers{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  std::vector<std::byte> reply;
  auto err = ch->send(std::as_bytes(std::span{numbers}), 2s);
  if (!err)
    err = ch->receive(reply, 2s);
  int64_t sum = 0;
  if (!err && reply.size() == sizeof(sum))
    std::memcpy(&sum, reply.data(), sizeof(sum));
  fmt::print("ipc: worker process {} answered over shared memory: {}\n", pid,
             err ? ipc::describe(err) : std::to_string(sum));
  ::kill(pid, SIGKILL);
  auto t0 = std::chrono::steady_clock::now();
  auto after = ch->receive(reply, 2s);
  auto ms = std::chrono::duration<double, std::milli>(
                std::chrono::steady_clock::now() - t0)
                .count();
  fmt::print("ipc: killed worker noticed as {} after {:.0f} ms\n",
             after ? ipc::to_string(static_cast<ipc::errc>(after.code()))
                   : "nothing",
             ms);
  ::waitpid(pid, nullptr, 0);
  return err || sum != 55 || after != ipc::errc::peer_dead ? 1 : 0;
}

// The bridge peer (in the re-executed program): prices every order that
// arrives on "orders.new" and publishes the price on "orders.priced", which
// its bridge exports back; exits when the showcase closes the bridge.
[[noreturn]] int bridge_peer(actorbus::runtime::runtime& rt) {
  const char* name = std::getenv(peer_channel_env);
  auto ch = ipc::channel::open(name != nullptr ? name : "", 20s);
  if (!ch)
    ::_exit(2);
  bus::event_bus local{rt.system()};
  auto pricing = local.subscribe<int64_t>("orders.new", [&](int64_t items) {
    (void)local.publish("orders.priced", items * cents_per_item);
  });
  std::promise<void> closed;
  ipc::bridge_options opts;
  opts.export_patterns = {"orders.priced"};
  opts.on_down = [&](const caf::error&) { closed.set_value(); };
  auto bridge = ipc::bus_bridge::start(local, std::move(*ch), opts);
  if (!pricing || !bridge)
    ::_exit(3);
  auto done = closed.get_future().wait_for(60s) == std::future_status::ready;
  ::_exit(done ? 0 : 4); // the peer runs no other part
}

int bridge_demo(actorbus::runtime::runtime& rt) {
  auto name = "actorbus-showcase-bridge-" + std::to_string(::getpid());
  auto ch = ipc::channel::create(name);
  if (!ch) {
    fmt::print("ipc: {}\n", ipc::describe(ch.error()));
    return 1;
  }
  auto spec = ipc::worker_role_process(peer_role);
  spec.env.push_back(std::string{peer_channel_env} + "=" + name);
  auto peer = ipc::launch_process(rt.system(), std::move(spec));
  if (!peer) {
    fmt::print("ipc: {}\n", ipc::describe(peer.error()));
    return 1;
  }
  caf::scoped_actor self{rt.system()};
  self->monitor(peer->actor);
  bus::event_bus local{rt.system()};
  struct answer_event { // copied out of the event, a view
    std::string topic;
    caf::actor_addr publisher;
    int64_t cents = 0;
  };
  std::promise<answer_event> priced;
  auto sub = local.subscribe<int64_t>(
      "orders.priced", [&](const bus::event<int64_t>& ev) {
        priced.set_value({ev.topic(), ev.publisher(), ev.value()});
      });
  ipc::bridge_options opts;
  opts.export_patterns = {"orders.new"};
  auto bridge = ipc::bus_bridge::start(local, std::move(*ch), opts);
  if (!sub || !bridge)
    return 1;
  constexpr int64_t items = 3;
  (void)local.publish("orders.new", items);
  auto answer = priced.get_future();
  if (answer.wait_for(20s) != std::future_status::ready) {
    fmt::print("ipc: no price came back over the bus bridge\n");
    return 1;
  }
  auto ev = answer.get();
  bool from_peer = ev.publisher == bridge->remote_publisher();
  fmt::print("ipc: bus event orders.new = {} crossed to process {} through "
             "bus_bridge, which answered {} = {} (from the {} publisher)\n",
             items, peer->pid, ev.topic, ev.cents,
             from_peer ? "remote" : "local");
  // Closing the bridge ends the peer; its process actor reports the exit.
  bridge->stop();
  std::optional<caf::error> peer_exit;
  self->receive([&](const caf::down_msg& dm) { peer_exit = dm.reason; },
                caf::after(20s) >> [] {});
  bool clean = peer_exit && !*peer_exit;
  fmt::print("ipc: bridge closed; peer process exited: {}\n",
             !peer_exit ? "still running after 20 s"
             : clean    ? "exit status 0"
                        : caf::to_string(*peer_exit));
  return from_peer && ev.cents == items * cents_per_item && clean ? 0 : 1;
}

int run(actorbus::runtime::runtime& rt) {
  if (auto rc = channel_demo())
    return rc;
  return bridge_demo(rt);
}

const bool registered = showcase::add({40, "ipc", &run});

// In the re-executed program, the peer runs before every other part (and
// only it: it exits); its stdout goes nowhere, the showcase reports for it.
const bool peer_registered =
    ipc::current_worker_role() == peer_role &&
    std::freopen("/dev/null", "w", stdout) != nullptr &&
    showcase::add({-1000, "bridge peer", &bridge_peer});

} // namespace
