// worker_queue: the seed's worker threads on a Queue with None sentinels,
// as samples/worker_queue runs it on a worker_pool: 3 workers, 100,000 items
// submitted one by one, then shutdown with wait (the sentinels and joins).
// The seed's process_item (undefined there) squares the item and adds it to
// a sum (no-op work, no sleep). Each iteration starts a new pool, as the
// seed starts new threads. The peer is bench/peers/actors_worker_queue.py.

#include "actorbus/actors/worker_pool.hpp"
#include "actorbus/runtime/config.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace {

using namespace actorbus::actors;

constexpr int64_t n_items = 100'000;

void BM_worker_queue_actorbus(benchmark::State& state) {
  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys{cfg};
  constexpr int64_t expected = n_items * (n_items + 1) * (2 * n_items + 1) / 6;
  for (auto _ : state) {
    std::atomic<int64_t> total{0};
    worker_pool workers{sys, {.workers = 3}};
    for (int64_t item = 1; item <= n_items; ++item)
      workers.submit([&total, item] {
        total.fetch_add(item * item, std::memory_order_relaxed);
      });
    if (auto err = workers.shutdown(
            {.wait = true, .timeout = std::chrono::seconds(60)}))
      state.SkipWithError("shutdown failed");
    if (total.load() != expected)
      state.SkipWithError("wrong sum of squares");
  }
  state.SetItemsProcessed(state.iterations() * n_items);
}

} // namespace

BENCHMARK(BM_worker_queue_actorbus)
    ->Name("worker_queue/actorbus")
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
