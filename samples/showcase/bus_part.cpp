// Showcase part: the event bus. Wildcard subscribers (a callback and an
// actor), a handler that fails without stopping the others, the dead-letter
// topic, and a scatter/gather with a deadline.

#include "actorbus/bus/event_bus.hpp"

#include "showcase.hpp"

#include <caf/event_based_actor.hpp>

#include <fmt/core.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>

namespace {

namespace bus = actorbus::bus;
using namespace std::chrono_literals;

struct counter {
  std::mutex mtx;
  std::condition_variable cv;
  int value = 0;

  void add(int n) {
    std::lock_guard guard{mtx};
    value += n;
    cv.notify_all();
  }

  bool wait_for(int n) {
    std::unique_lock guard{mtx};
    return cv.wait_for(guard, 5s, [&] { return value >= n; });
  }
};

int run(actorbus::runtime::runtime& sys) {
  bus::event_bus events{sys.system()};
  counter amounts;      // sum of order amounts seen by the callback
  counter actor_events; // events seen by the actor
  counter dead;         // dead letters
  auto totals =
      events.subscribe<int>("orders.*", [&](const bus::event<int>& e) {
        if (e.value() < 0)
          throw std::invalid_argument("negative amount");
        amounts.add(e.value());
      });
  auto auditor = sys.spawn([&](caf::event_based_actor*) {
    return caf::behavior{[&](const std::string&, const caf::actor_addr&, int) {
      actor_events.add(1);
    }};
  });
  if (!auditor)
    return 1;
  auto audit = events.subscribe("orders.#", *auditor);
  auto dead_letters = events.subscribe<bus::dead_letter>(
      bus::dead_letter_topic, [&](const bus::dead_letter&) { dead.add(1); });
  if (!totals || !audit || !dead_letters)
    return 1;
  for (int amount : {10, 20, 30, -5})
    events.publish("orders.created", amount);
  events.publish("payments.settled", 99); // nobody listens
  if (!amounts.wait_for(60) || !actor_events.wait_for(4) || !dead.wait_for(2))
    return 1;
  fmt::print("bus: callback summed {} over orders.*, actor audited {} "
             "events, {} dead letters\n",
             amounts.value, actor_events.value, dead.value);
  auto replies =
      events.subscribe<int>("stock.query", [](int sku) { return sku * 2; });
  auto slow = events.subscribe<int>("stock.#", [](int sku) { return sku * 3; });
  auto res = events.gather<int>("stock.query", 7, 1s);
  if (!res)
    return 1;
  int sum = 0;
  for (int x : res->replies)
    sum += x;
  fmt::print("bus: gather asked {} subscribers, {} replied, sum {}\n",
             res->asked, res->replies.size(), sum);
  auto st = events.stats("orders.created");
  fmt::print("bus: orders.created published {} dead-lettered {}\n",
             st.published, st.dead_lettered);
  caf::anon_send_exit(*auditor, caf::exit_reason::user_shutdown);
  return 0;
}

const bool registered = showcase::add({10, "bus", &run});

} // namespace
