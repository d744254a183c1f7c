// Bus events across processes: events published on a bus in this process
// reach a subscriber in a forked child through the actorbus bus bridge,
// beside the same events sent as messages to an actor in the child through
// CAF's middleman (remote actor over loopback TCP). Each iteration sends a
// batch of (topic, int64) events and ends when the child confirms it has
// handled the whole batch, so both sides count delivered events.

#include "actorbus/ipc/bridge.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/publish.hpp>
#include <caf/io/remote_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <csignal>
#include <future>
#include <mutex>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace bus = actorbus::bus;
namespace ipc = actorbus::ipc;
using namespace std::chrono_literals;

constexpr int64_t batch = 10'000;
const std::string topic = "bench.events";

using flush_atom = caf::atom_constant<caf::atom("flush")>;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
      .count();
}

// Lossless settings on both sides: the benchmark counts delivered events.
bus::subscription_options lossless() {
  bus::subscription_options opts;
  opts.capacity = 8192;
  opts.policy = bus::overload_policy::block;
  opts.block_timeout = 30s;
  return opts;
}

ipc::bridge_options bridge_opts(std::string exports) {
  ipc::bridge_options opts;
  opts.export_patterns = {std::move(exports)};
  opts.subscription = lossless();
  opts.send_timeout = 30s;
  return opts;
}

// -- actorbus: bus -> bridge -> channel -> bridge -> bus -> subscriber ------

// The child: counts "bench.#" events; on "bench.flush" publishes the count
// on "ack.count" (exported back) and resets it. Ends when the parent closes.
[[noreturn]] void bridge_child(ipc::channel ch) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  bus::event_bus local{sys};
  int64_t count = 0;
  auto sub = local.subscribe<caf::message>(
      "bench.#",
      [&](const bus::event<caf::message>& ev) {
        if (ev.topic() == "bench.flush") {
          (void)local.publish("ack.count", count);
          count = 0;
        } else {
          ++count;
        }
      },
      lossless());
  if (!sub)
    ::_exit(1);
  std::promise<void> closed;
  auto opts = bridge_opts("ack.#");
  opts.on_down = [&](const caf::error&) { closed.set_value(); };
  auto bridge = ipc::bus_bridge::start(local, std::move(ch), opts);
  if (!bridge)
    ::_exit(1);
  closed.get_future().wait_for(120s);
  ::_exit(0);
}

void BM_bus_bridge(benchmark::State& state) {
  auto name = "actorbus-bench-bridge-" + std::to_string(::getpid());
  auto ch = ipc::channel::create(name);
  if (!ch) {
    state.SkipWithError("channel");
    return;
  }
  auto pid = ::fork();
  if (pid == 0) {
    auto peer_end = ipc::channel::open(name, 5s);
    if (!peer_end)
      ::_exit(1);
    bridge_child(std::move(*peer_end));
  }
  {
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    bus::event_bus local{sys};
    std::mutex mtx;
    std::optional<std::promise<int64_t>> ack;
    auto sub = local.subscribe<int64_t>("ack.count", [&](int64_t n) {
      std::lock_guard guard{mtx};
      if (ack)
        ack->set_value(n);
    });
    auto bridge =
        ipc::bus_bridge::start(local, std::move(*ch), bridge_opts("bench.#"));
    if (!sub || !bridge) {
      state.SkipWithError("bridge");
    } else {
      for (auto _ : state) {
        std::future<int64_t> got;
        {
          std::lock_guard guard{mtx};
          ack.emplace();
          got = ack->get_future();
        }
        auto t0 = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < batch; ++i)
          (void)local.publish(topic, i);
        (void)local.publish("bench.flush", int64_t{0});
        if (got.wait_for(30s) != std::future_status::ready ||
            got.get() != batch) {
          state.SkipWithError("events lost or no ack");
          break;
        }
        state.SetIterationTime(seconds_since(t0));
      }
    }
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * batch);
}

// -- CAF's middleman: actor -> TCP loopback -> actor ------------------------

// The child's actor counts (topic, value) messages; `flush` answers with
// the count and resets it. Messages of one sender arrive in order, so the
// answer covers every message sent before the flush.
caf::behavior counting_actor(caf::event_based_actor*, int64_t start) {
  auto count = std::make_shared<int64_t>(start);
  return {
      [count](const std::string&, int64_t) { ++*count; },
      [count](flush_atom) {
        auto n = *count;
        *count = 0;
        return n;
      },
  };
}

bool read_port(int fd, uint16_t& port) {
  pollfd pfd{fd, POLLIN, 0};
  return ::poll(&pfd, 1, 10'000) == 1 &&
         ::read(fd, &port, sizeof(port)) == sizeof(port) && port != 0;
}

void BM_caf_middleman(benchmark::State& state) {
  int port_pipe[2];
  int stop_pipe[2];
  if (::pipe(port_pipe) != 0 || ::pipe(stop_pipe) != 0) {
    state.SkipWithError("pipe");
    return;
  }
  auto pid = ::fork();
  if (pid == 0) {
    ::close(port_pipe[0]);
    ::close(stop_pipe[1]);
    caf::actor_system_config cfg;
    cfg.load<caf::io::middleman>();
    caf::actor_system sys{cfg};
    auto counter = sys.spawn(counting_actor, int64_t{0});
    auto port = caf::io::publish(counter, 0, "127.0.0.1");
    uint16_t p = port ? *port : 0;
    if (::write(port_pipe[1], &p, sizeof(p)) != sizeof(p))
      ::_exit(1);
    char stop = 0;
    (void)::read(stop_pipe[0], &stop, 1); // EOF when the parent is done
    ::_exit(0);
  }
  ::close(port_pipe[1]);
  ::close(stop_pipe[0]);
  uint16_t port = 0;
  if (!read_port(port_pipe[0], port)) {
    state.SkipWithError("child did not publish");
  } else {
    caf::actor_system_config cfg;
    cfg.load<caf::io::middleman>();
    caf::actor_system sys{cfg};
    auto remote = caf::io::remote_actor(sys, "127.0.0.1", port);
    if (!remote) {
      state.SkipWithError("remote_actor failed");
    } else {
      caf::scoped_actor self{sys};
      for (auto _ : state) {
        auto t0 = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < batch; ++i)
          self->send(*remote, topic, i);
        int64_t got = -1;
        self->request(*remote, 30s, flush_atom::value)
            .receive([&](int64_t n) { got = n; }, [](caf::error&) {});
        if (got != batch) {
          state.SkipWithError("events lost or no ack");
          break;
        }
        state.SetIterationTime(seconds_since(t0));
      }
    }
  }
  ::close(stop_pipe[1]);
  ::close(port_pipe[0]);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * batch);
}

} // namespace

BENCHMARK(BM_bus_bridge)
    ->Name("bus_bridge/actorbus")
    ->Iterations(30)
    ->UseManualTime();
BENCHMARK(BM_caf_middleman)
    ->Name("bus_bridge/caf_middleman")
    ->Iterations(30)
    ->UseManualTime();

BENCHMARK_MAIN();
