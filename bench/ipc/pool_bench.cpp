// process_pool: per-task throughput on tiny tasks (Python's
// multiprocessing.Pool with chunksize=1 is the peer, bench/peers/ipc_pool.py)
// and the speed-up of cpu_bound_task on all cores over one process.

#include "actorbus/ipc/process_pool.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <thread>
#include <vector>

namespace {

namespace ipc = actorbus::ipc;

// The seed's cpu_bound_task: sum(i * i for i in range(n)).
int64_t cpu_bound_task(int64_t n) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < static_cast<uint64_t>(n); ++i)
    sum += i * i;
  return static_cast<int64_t>(sum);
}

ipc::process_pool_options two_workers() {
  ipc::process_pool_options opts;
  opts.workers = 2;
  return opts;
}

// 2,000 tasks of cpu_bound_task(100) per iteration, one task per message.
void BM_pool_tasks(benchmark::State& state) {
  ipc::process_pool<int64_t, int64_t> pool{cpu_bound_task, two_workers()};
  std::vector<int64_t> args(2000, 100);
  for (auto _ : state) {
    auto res = pool.map(args);
    if (!res || res->size() != args.size())
      state.SkipWithError("map failed");
  }
  state.SetItemsProcessed(
      static_cast<int64_t>(state.iterations() * args.size()));
}

// Speed-up of 8 x cpu_bound_task(30M) on 2 workers over a sequential loop.
void BM_pool_speedup(benchmark::State& state) {
  ipc::process_pool<int64_t, int64_t> pool{cpu_bound_task, two_workers()};
  std::vector<int64_t> args(8, 30'000'000);
  double pooled = 0;
  double sequential = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    auto res = pool.map(args);
    auto t1 = std::chrono::steady_clock::now();
    int64_t check = 0;
    for (auto x : args)
      check ^= cpu_bound_task(x);
    benchmark::DoNotOptimize(check);
    auto t2 = std::chrono::steady_clock::now();
    if (!res)
      state.SkipWithError("map failed");
    pooled += std::chrono::duration<double>(t1 - t0).count();
    sequential += std::chrono::duration<double>(t2 - t1).count();
  }
  state.counters["speedup"] = sequential / pooled;
}

} // namespace

BENCHMARK(BM_pool_tasks)
    ->Name("process_pool_tasks/actorbus_process_pool")
    ->Iterations(10)
    ->UseRealTime();
BENCHMARK(BM_pool_speedup)
    ->Name("process_pool_speedup/actorbus_process_pool")
    ->Iterations(3)
    ->UseRealTime();

BENCHMARK_MAIN();
