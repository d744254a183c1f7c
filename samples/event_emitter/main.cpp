// The seed's EventEmitter (on, off, emit), one to one on the actorbus event
// bus:
//
//   emitter = EventEmitter()            event_bus emitter{sys.system()};
//   emitter.on("data", handle_data)     auto sub = emitter.subscribe<...>(...);
//   await emitter.emit("data", "Hello") emitter.publish("data", ...);
//   emitter.off("data", handle_data)    sub.cancel();
//
// What the bus adds: handlers run in their own actors (a slow one does not
// stall emit), events arrive in emit order, and a handler that throws does
// not stop the others: its event goes to "$dead-letters" with the reason.
//
// Usage: event_emitter [N]   emits "Hello, World!" and then N numbered
// events; prints what the handlers saw.

#include "actorbus/bus/event_bus.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"

#include <fmt/core.h>

#include <chrono>
#include <future>
#include <stdexcept>
#include <string>

namespace bus = actorbus::bus;
namespace rt = actorbus::runtime;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
  long n = 3;
  CLI::App app{"The EventEmitter pattern (on, off, emit) on the event bus.",
               "event_emitter"};
  app.add_option("N", n, "numbered events emitted after \"Hello, World!\"")
      ->capture_default_str()
      ->check(CLI::Range(0L, 10'000'000L));
  rt::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  rt::runtime sys{std::move(cfg)};
  bus::event_bus emitter{sys.system()};
  auto total = n + 1; // "Hello, World!" plus N numbered events

  // async def handle_data(data: str): print(f"Received: {data}")
  long received = 0;
  long sum_of_ids = 0;
  bool in_order = true;
  std::promise<void> handled_all;
  auto handle_data = [&](const bus::event<std::string>& e) {
    if (received == 0)
      fmt::print("Received: {}\n", e.value());
    else if (std::stol(e.value().substr(3)) != received - 1) // "id-<i>"
      in_order = false;
    else
      sum_of_ids += received - 1;
    if (++received == total)
      handled_all.set_value();
  };
  // emitter.on("data", handle_data)
  auto on_data = emitter.subscribe<std::string>("data", handle_data);

  // Two more handlers on the same event: one that fails on event 13, and an
  // audit that must still see everything.
  auto failing =
      emitter.subscribe<std::string>("data", [](const std::string& x) {
        if (x == "id-13")
          throw std::runtime_error("boom at 13");
      });
  long audited = 0;
  std::promise<void> audited_all;
  auto audit = emitter.subscribe<std::string>("data", [&](const std::string&) {
    if (++audited == total)
      audited_all.set_value();
  });
  std::promise<bus::dead_letter> first_dead;
  int dead_seen = 0;
  auto dead = emitter.subscribe<bus::dead_letter>(
      bus::dead_letter_topic, [&](const bus::dead_letter& x) {
        if (dead_seen++ == 0)
          first_dead.set_value(x);
      });
  if (!on_data || !failing || !audit || !dead) {
    fmt::print(stderr, "subscribe failed\n");
    return 1;
  }

  // await emitter.emit("data", "Hello, World!")
  emitter.publish("data", std::string{"Hello, World!"});
  for (long i = 0; i < n; ++i)
    emitter.publish("data", "id-" + std::to_string(i));

  if (handled_all.get_future().wait_for(30s) != std::future_status::ready ||
      audited_all.get_future().wait_for(30s) != std::future_status::ready) {
    fmt::print("timed out waiting for the handlers\n");
    return 1;
  }
  fmt::print("handle_data received {} events {}, sum of ids {}\n", received,
             in_order ? "in order" : "OUT OF ORDER", sum_of_ids);
  fmt::print("a failing handler did not stop the others: audit saw {}\n",
             audited);
  auto fut = first_dead.get_future();
  if (n > 13 && fut.wait_for(30s) == std::future_status::ready) {
    auto dl = fut.get();
    fmt::print("dead letter: {} on '{}' ({})\n", bus::to_string(dl.reason),
               dl.topic, dl.detail);
  }

  // emitter.off("data", handler) for all three; then emit reaches nobody.
  on_data->cancel();
  failing->cancel();
  audit->cancel();
  std::promise<bus::dead_letter> after_off;
  auto dead2 = emitter.subscribe<bus::dead_letter>(
      bus::dead_letter_topic, [&](const bus::dead_letter& x) {
        if (x.topic == "data")
          after_off.set_value(x);
      });
  dead->cancel();
  emitter.publish("data", std::string{"anyone?"});
  auto off_fut = after_off.get_future();
  if (off_fut.wait_for(30s) != std::future_status::ready) {
    fmt::print("timed out waiting for the dead letter\n");
    return 1;
  }
  fmt::print("after off: emit reached {} handlers, dead letter {}\n",
             emitter.stats("data").subscribers,
             bus::to_string(off_fut.get().reason));
  return in_order && received == total && audited == total ? 0 : 1;
}
