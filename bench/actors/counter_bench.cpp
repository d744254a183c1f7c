// counter: the seed's ThreadSafeCounter as samples/counter uses it, an
// actorbus::actors::counter that 8 threads increment 100,000 times each
// (each a lock-free add to the counter's atomic), then one get() once every
// thread is joined, which sees all of them. A new counter and new threads
// every iteration, as the peer does: bench/peers/actors_counter.py.

#include "actorbus/actors/guarded.hpp"
#include "actorbus/runtime/config.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <thread>
#include <vector>

namespace {

constexpr int n_threads = 8;
constexpr int n_increments = 100'000;

void BM_counter_actorbus(benchmark::State& state) {
  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys{cfg};
  for (auto _ : state) {
    actorbus::actors::counter count{sys};
    std::vector<std::thread> threads;
    for (int t = 0; t < n_threads; ++t)
      threads.emplace_back([&count] {
        for (int i = 0; i < n_increments; ++i)
          count.increment();
      });
    for (auto& t : threads)
      t.join();
    if (count.get() != int64_t{n_threads} * n_increments)
      state.SkipWithError("wrong count");
  }
  state.SetItemsProcessed(state.iterations() * n_threads * n_increments);
}

} // namespace

BENCHMARK(BM_counter_actorbus)
    ->Name("counter/actorbus")
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
