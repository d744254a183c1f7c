// Worker pool throughput: submit-and-complete of no-op tasks and `map` over
// 100,000 items. The peer, Python's ThreadPoolExecutor doing the same, is
// bench/peers/actors_thread_pool.py (same group names).

#include "actorbus/actors/worker_pool.hpp"
#include "actorbus/runtime/config.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <numeric>
#include <vector>

namespace {

using namespace actorbus::actors;

constexpr int n_tasks = 100'000;
constexpr auto wait_limit = caf::timespan{std::chrono::seconds(60)};

const pool_config bench_config{.workers = 2};
const worker_tuning bench_tuning{.batch = 64};

// Submits 100,000 no-op tasks one by one, then waits for every future.
void BM_pool_submit_actorbus(benchmark::State& state) {
  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys{cfg};
  worker_pool pool{sys, bench_config, bench_tuning};
  std::vector<task_future<int>> fs;
  fs.reserve(n_tasks);
  for (auto _ : state) {
    fs.clear();
    for (int i = 0; i < n_tasks; ++i)
      fs.push_back(pool.submit([i] { return i; }));
    for (auto& f : fs)
      if (!f.get(wait_limit))
        state.SkipWithError("task failed");
  }
  state.SetItemsProcessed(state.iterations() * n_tasks);
}

// map over 100,000 items, then reads every result in order.
void BM_pool_map_actorbus(benchmark::State& state) {
  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys{cfg};
  worker_pool pool{sys, bench_config, bench_tuning};
  std::vector<int> xs(n_tasks);
  std::iota(xs.begin(), xs.end(), 0);
  for (auto _ : state) {
    auto fs = pool.map([](int x) { return x; }, xs);
    long sum = 0;
    for (auto& f : fs) {
      auto r = f.get(wait_limit);
      if (!r)
        state.SkipWithError("task failed");
      else
        sum += *r;
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * n_tasks);
}

} // namespace

BENCHMARK(BM_pool_submit_actorbus)
    ->Name("pool_submit_100k/actorbus")
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_pool_map_actorbus)
    ->Name("pool_map_100k/actorbus")
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
