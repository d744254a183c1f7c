// A tour of the event bus: wildcards, overload policies, dead letters,
// retained values, scatter/gather and per-topic statistics.
//
// Usage: bus_tour [N]   N events in the overload burst (default 1000, >= 20).

#include "actorbus/bus/event_bus.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace bus = actorbus::bus;
namespace rt = actorbus::runtime;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 30s;

/// Counts events and lets main wait for a number of them.
class tally {
public:
  void add() {
    std::lock_guard guard{mtx_};
    ++count_;
    cv_.notify_all();
  }

  bool wait_for(long n) {
    std::unique_lock guard{mtx_};
    return cv_.wait_for(guard, patience, [&] { return count_ >= n; });
  }

  long count() {
    std::lock_guard guard{mtx_};
    return count_;
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  long count_ = 0;
};

} // namespace

int main(int argc, char** argv) {
  long n = 1000;
  CLI::App app{"A tour of the event bus: wildcards, overload policies, dead "
               "letters, retained values, gather, statistics.",
               "bus_tour"};
  app.add_option("N", n, "events in the overload burst")
      ->capture_default_str()
      ->check(CLI::Range(20L, 10'000'000L));
  rt::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  rt::runtime sys{std::move(cfg)};
  bus::event_bus events{sys};

  // Dead letters, by reason.
  std::mutex dead_mtx;
  std::map<std::string, long> dead;
  tally dead_count;
  auto dead_sub = events.subscribe<bus::dead_letter>(
      bus::dead_letter_topic, [&](const bus::dead_letter& x) {
        {
          std::lock_guard guard{dead_mtx};
          ++dead[bus::to_string(x.reason)];
        }
        dead_count.add();
      });

  // 1. Wildcards.
  std::vector<std::string> patterns{"orders.created", "orders.*", "orders.#",
                                    "*.created"};
  std::vector<tally> got(patterns.size());
  std::vector<bus::subscription> subs;
  for (size_t i = 0; i < patterns.size(); ++i)
    subs.push_back(std::move(*events.subscribe<std::string>(
        patterns[i], [&got, i](const std::string&) { got[i].add(); })));
  for (auto* topic : {"orders.created", "orders.shipped", "orders.eu.created",
                      "orders", "users.created"})
    events.publish(topic, std::string{"payload"});
  events.publish("nobody.listens", std::string{"lost"}); // a dead letter
  long want[] = {1, 2, 4, 2};
  fmt::print("wildcards:");
  for (size_t i = 0; i < patterns.size(); ++i) {
    if (!got[i].wait_for(want[i]))
      return 1;
    fmt::print("{} '{}' got {}", i == 0 ? "" : ",", patterns[i],
               got[i].count());
  }
  fmt::print("\n");

  // 2. Overload: a stalled subscriber with room for 10 events (the one in
  // its hands included) under drop_oldest.
  std::promise<void> release;
  auto gate = release.get_future().share();
  std::promise<void> entered;
  std::mutex kept_mtx;
  std::vector<long> kept;
  tally slow_got;
  bus::subscription_options small;
  small.capacity = 10;
  small.policy = bus::overload_policy::drop_oldest;
  auto slow = events.subscribe<long>(
      "sensor.raw",
      [&, gate](long x) {
        if (x < 0) {
          entered.set_value();
          gate.wait_for(patience); // stalled until main releases it
        } else {
          std::lock_guard guard{kept_mtx};
          kept.push_back(x);
        }
        slow_got.add();
      },
      small);
  events.publish("sensor.raw", -1L); // occupies the handler
  if (entered.get_future().wait_for(patience) != std::future_status::ready)
    return 1;
  for (long i = 0; i < n; ++i)
    events.publish("sensor.raw", i);
  release.set_value();
  if (!slow_got.wait_for(1 + n - static_cast<long>(slow->dropped())))
    return 1;
  {
    std::lock_guard guard{kept_mtx};
    fmt::print("overload: drop_oldest kept {} events {}..{} of {} "
               "(dropped {})\n",
               kept.size(), kept.front(), kept.back(), n, slow->dropped());
  }

  bus::subscription_options strict;
  strict.capacity = 10;
  strict.policy = bus::overload_policy::fail;
  std::promise<void> release2;
  auto gate2 = release2.get_future().share();
  auto picky = events.subscribe<long>(
      "sensor.strict", [gate2](long) { gate2.wait_for(patience); }, strict);
  long refused = 0;
  caf::error last;
  for (long i = 0; i < n; ++i)
    if (auto err = events.publish("sensor.strict", i)) {
      ++refused;
      last = err;
    }
  release2.set_value();
  fmt::print("overload: fail refused {} of {} publishes with {}\n", refused, n,
             sys.system().render(last));

  // 3. A handler that throws: reported, not fatal.
  auto fragile =
      events.subscribe<std::string>("orders.cancelled", [](const std::string&) {
        throw std::runtime_error("cannot cancel a shipped order");
      });
  events.publish("orders.cancelled", std::string{"order 17"});
  long expected_dead = 1 + slow->dropped() + refused + 1;
  if (!dead_count.wait_for(expected_dead))
    return 1;
  {
    std::lock_guard guard{dead_mtx};
    fmt::print("dead letters: no_subscriber={} dropped_oldest={} "
               "rejected={} handler_failed={}\n",
               dead["no_subscriber"], dead["dropped_oldest"], dead["rejected"],
               dead["handler_failed"]);
  }

  // 4. Retained values for late subscribers.
  events.publish("config.mode", std::string{"eco"}, bus::publish_options{true});
  events.publish("config.mode", std::string{"fast"},
                 bus::publish_options{true});
  std::promise<std::string> first_mode;
  auto late = events.subscribe<std::string>(
      "config.#", [&, once = true](const std::string& x) mutable {
        if (std::exchange(once, false))
          first_mode.set_value(x);
      });
  auto mode = first_mode.get_future();
  if (mode.wait_for(patience) != std::future_status::ready)
    return 1;
  fmt::print("retained: late subscriber starts with mode={}\n", mode.get());

  // 5. Scatter/gather: ask every supplier for a price, wait at most 1 s.
  std::vector<bus::subscription> suppliers;
  for (int base : {120, 95, 101})
    suppliers.push_back(std::move(*events.subscribe<int>(
        "quotes.request", [base](int qty) { return base * qty; })));
  auto quotes = events.gather<int>("quotes.request", 1, 1s);
  if (!quotes)
    return 1;
  int best = *std::min_element(quotes->replies.begin(), quotes->replies.end());
  fmt::print("gather: {} of {} quoted, best price {}\n", quotes->replies.size(),
             quotes->asked, best);

  // 6. Statistics per topic (counters are final once the subscriptions
  // are cancelled: cancel waits for running callbacks).
  auto subscribers = events.stats("orders.created").subscribers;
  subs.clear();
  auto st = events.stats("orders.created");
  fmt::print("stats: orders.created published={} delivered={} dropped={} "
             "subscribers={}\n",
             st.published, st.delivered, st.dropped, subscribers);
  return 0;
}
