// shared_array: the seed's SharedArray as samples/shared_array uses it, an
// ipc::shared_array<double> of 1000 x 1000 that the parent creates (or
// attaches to), 2 forked worker processes attach by name and fill rows
// w, w + 2, ... with each element's index, and the parent sums (checked)
// and closes, which unlinks it. New array and processes every iteration,
// as the peer does: bench/peers/ipc_shared_array.py. Nothing sleeps. The
// workers are the sample's own (samples/shared_array/shared_array.hpp).

#include "actorbus/ipc/shared_array.hpp"

#include "shared_array.hpp"

#include <benchmark/benchmark.h>

#include <cstddef>
#include <numeric>
#include <string>
#include <unistd.h>

namespace {

namespace ipc = actorbus::ipc;
using actorbus::samples::shared_array::run_workers;

constexpr size_t rows = 1000;
constexpr size_t cols = 1000;
constexpr size_t workers = 2;

void BM_shared_array_actorbus(benchmark::State& state) {
  auto name = "actorbus-bench-shared-array-" + std::to_string(::getpid());
  constexpr double n = rows * cols;
  for (auto _ : state) {
    auto array =
        ipc::shared_array<double>::create_or_attach(name, {rows, cols});
    if (!array) {
      state.SkipWithError(ipc::describe(array.error()).c_str());
      break;
    }
    int failed = run_workers(name, rows, cols, workers);
    auto data = array->data();
    auto total = std::accumulate(data.begin(), data.end(), 0.0);
    array->close();
    if (failed != 0 || total != n * (n - 1) / 2)
      state.SkipWithError("a worker failed or the sum is wrong");
  }
  state.SetItemsProcessed(
      static_cast<int64_t>(state.iterations() * rows * cols));
}

} // namespace

BENCHMARK(BM_shared_array_actorbus)
    ->Name("shared_array/actorbus")
    ->Iterations(30)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
