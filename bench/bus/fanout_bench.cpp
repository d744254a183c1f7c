// Publish-to-deliver throughput of the event bus with 1, 10 and 100
// subscribers, beside raw caf::anon_send to each subscriber and caf::group
// (anon_send to a local group), in the same run; and the cost of one
// publish call from a non-actor thread.
//
// Every benchmark iteration publishes `batch` events from the benchmark
// thread and waits until every subscriber has handled all of them, so the
// rate counts deliveries that happened, not messages queued.
// items_per_second = deliveries per second (events x subscribers).

#include "actorbus/bus/event_bus.hpp"
#include "actorbus/runtime/config.hpp"

#include "latency.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/group.hpp>
#include <caf/send.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <utility>
#include <vector>

namespace {

using namespace actorbus;
using namespace std::chrono_literals;

/// Counts deliveries; the benchmark thread waits for a target count.
class delivery_counter {
public:
  void add(int64_t n = 1) {
    if (count_.fetch_add(n, std::memory_order_acq_rel) + n >= target_.load()) {
      std::lock_guard guard{mtx_};
      cv_.notify_all();
    }
  }

  /// Waits until `n` deliveries happened since the last reset. Returns
  /// false on timeout.
  bool wait(int64_t n) {
    target_ = n;
    std::unique_lock guard{mtx_};
    return cv_.wait_for(guard, 60s, [&] { return count_.load() >= n; });
  }

  void reset() {
    count_ = 0;
    target_ = INT64_MAX;
  }

private:
  std::atomic<int64_t> count_{0};
  std::atomic<int64_t> target_{INT64_MAX};
  std::mutex mtx_;
  std::condition_variable cv_;
};

double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

runtime::runtime_config make_config() {
  runtime::runtime_config cfg;
  cfg.set("scheduler.max-threads", size_t{2});
  return cfg;
}

int64_t batch_for(int64_t subscribers) {
  return subscribers >= 100 ? 2000 : subscribers >= 10 ? 20000 : 100000;
}

void report(benchmark::State& state, int64_t deliveries) {
  state.SetItemsProcessed(deliveries);
}

// Ours: one publish per event; each subscriber is a callback. Argument 1:
// the subscription's capacity, 0 for one batch. Raw CAF's mailboxes are
// unbounded, so the like-for-like measure gives each subscription room for
// a whole batch: the bound never engages and the rate is that of delivery.
// With a smaller bound (the default 1024, "actorbus_bounded") the publisher
// also waits for its subscriber every `capacity` events: back-pressure,
// which on a loaded machine costs a scheduling round trip each time.
void BM_bus(benchmark::State& state) {
  auto n = state.range(0);
  auto batch = batch_for(n);
  auto cfg = make_config();
  caf::actor_system sys{cfg};
  bus::event_bus sut{sys};
  bus::subscription_options opts;
  opts.capacity = state.range(1) > 0 ? static_cast<size_t>(state.range(1))
                                     : static_cast<size_t>(batch);
  delivery_counter counter;
  std::vector<bus::subscription> subs;
  for (int64_t i = 0; i < n; ++i)
    subs.push_back(std::move(*sut.subscribe<int>(
        "bench.fanout", [&](int) { counter.add(); }, opts)));
  int64_t total = 0;
  for (auto _ : state) {
    counter.reset();
    for (int i = 0; i < batch; ++i)
      if (sut.publish("bench.fanout", i))
        state.SkipWithError("publish failed");
    if (!counter.wait(batch * n))
      state.SkipWithError("deliveries missing");
    total += batch * n;
  }
  report(state, total);
}

// Peer: raw CAF, the publisher sends every event to every subscriber.
void BM_anon_send(benchmark::State& state) {
  auto n = state.range(0);
  auto batch = batch_for(n);
  auto cfg = make_config();
  caf::actor_system sys{cfg};
  delivery_counter counter;
  std::vector<caf::actor> subs;
  for (int64_t i = 0; i < n; ++i)
    subs.push_back(sys.spawn([&](caf::event_based_actor*) {
      return caf::behavior{[&](int) { counter.add(); }};
    }));
  int64_t total = 0;
  for (auto _ : state) {
    counter.reset();
    for (int i = 0; i < batch; ++i)
      for (auto& s : subs)
        caf::anon_send(s, i);
    if (!counter.wait(batch * n))
      state.SkipWithError("deliveries missing");
    total += batch * n;
  }
  report(state, total);
  for (auto& s : subs)
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
}

// Peer: caf::group, what CAF 0.17 offers for pub/sub.
void BM_group(benchmark::State& state) {
  auto n = state.range(0);
  auto batch = batch_for(n);
  auto cfg = make_config();
  caf::actor_system sys{cfg};
  auto grp = sys.groups().anonymous();
  delivery_counter counter;
  std::vector<caf::actor> subs;
  for (int64_t i = 0; i < n; ++i)
    subs.push_back(sys.spawn_in_group(grp, [&](caf::event_based_actor*) {
      return caf::behavior{[&](int) { counter.add(); }};
    }));
  int64_t total = 0;
  for (auto _ : state) {
    counter.reset();
    for (int i = 0; i < batch; ++i)
      caf::anon_send(grp, i);
    if (!counter.wait(batch * n))
      state.SkipWithError("deliveries missing");
    total += batch * n;
  }
  report(state, total);
  for (auto& s : subs)
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
}

// The cost of one publish call on a non-actor thread, one subscriber keeping
// up (block policy: nothing is lost; waits, if any, are included).
// ns_per_publish: wall time per call (mean); median_us/p99_us: per call.
void BM_publish_from_thread(benchmark::State& state) {
  auto cfg = make_config();
  caf::actor_system sys{cfg};
  bus::event_bus sut{sys};
  delivery_counter counter;
  bus::subscription_options opts;
  opts.capacity = 65536;
  auto sub = std::move(*sut.subscribe<int>(
      "bench.thread", [&](int) { counter.add(); }, opts));
  counter.reset();
  int64_t published = 0;
  auto cpu_start = thread_cpu_ns();
  auto start = std::chrono::steady_clock::now();
  // Every 8th call is timed on its own: the median per call, unlike the
  // mean, does not count the time the OS gave to other processes.
  bench::latency_samples samples;
  auto publish = [&] {
    if (sut.publish("bench.thread", static_cast<int>(published)))
      state.SkipWithError("publish failed");
  };
  for (auto _ : state) {
    if ((published & 7) == 0)
      samples.measure(publish);
    else
      publish();
    ++published;
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  auto cpu = thread_cpu_ns() - cpu_start;
  if (!counter.wait(published))
    state.SkipWithError("deliveries missing");
  state.SetItemsProcessed(published);
  samples.report(state);
  state.counters["ns_per_publish"] =
      std::chrono::duration<double, std::nano>(elapsed).count() /
      static_cast<double>(published);
  // Context on a loaded machine: the CPU the publishing thread spent.
  state.counters["cpu_ns_per_publish"] = cpu / static_cast<double>(published);
}

} // namespace

BENCHMARK(BM_bus)->Name("bus_fanout_1/actorbus")->Args({1, 0})->UseRealTime();
BENCHMARK(BM_bus)
    ->Name("bus_fanout_1/actorbus_bounded")
    ->Args({1, 1024})
    ->UseRealTime();
BENCHMARK(BM_anon_send)
    ->Name("bus_fanout_1/caf_anon_send")
    ->Arg(1)
    ->UseRealTime();
BENCHMARK(BM_group)->Name("bus_fanout_1/caf_group")->Arg(1)->UseRealTime();
BENCHMARK(BM_bus)->Name("bus_fanout_10/actorbus")->Args({10, 0})->UseRealTime();
BENCHMARK(BM_anon_send)
    ->Name("bus_fanout_10/caf_anon_send")
    ->Arg(10)
    ->UseRealTime();
BENCHMARK(BM_group)->Name("bus_fanout_10/caf_group")->Arg(10)->UseRealTime();
BENCHMARK(BM_bus)
    ->Name("bus_fanout_100/actorbus")
    ->Args({100, 0})
    ->UseRealTime();
BENCHMARK(BM_anon_send)
    ->Name("bus_fanout_100/caf_anon_send")
    ->Arg(100)
    ->UseRealTime();
BENCHMARK(BM_group)->Name("bus_fanout_100/caf_group")->Arg(100)->UseRealTime();
BENCHMARK(BM_publish_from_thread)
    ->Name("bus_publish_from_thread/actorbus")
    ->Iterations(1000000)
    ->UseRealTime();

BENCHMARK_MAIN();
