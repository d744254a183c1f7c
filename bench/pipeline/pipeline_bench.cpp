// Pipelines beside their peers (bench/peers/pipeline_*.py):
//  * pipeline3: items/s through three cheap stages (x+1, 2x, x-1), against
//    the seed's asyncio pipeline and a plain single-threaded loop (the
//    overhead of actors and credit);
//  * data_pipeline: bytes/s of the data_pipeline sample's stages on a
//    generated access log, against the Python script producing the same
//    report (same size and seed) and the single-threaded C++ loop.

#include "actorbus/pipeline/pipeline.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "access_log.hpp"
#include "log_pipeline.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <unistd.h>

namespace pipeline = actorbus::pipeline;
using namespace std::chrono_literals;

namespace {

constexpr int64_t n_items = 1'000'000;

// One runtime for every benchmark, created and shut down in main (not a
// static: its shutdown must run before the process's own teardown).
actorbus::runtime::runtime* the_runtime = nullptr;

actorbus::runtime::runtime& shared_runtime() {
  return *the_runtime;
}

void pipeline3_actorbus(benchmark::State& state) {
  auto& rt = shared_runtime();
  for (auto _ : state) {
    int64_t sum = 0;
    auto run = pipeline::from_iota(0, n_items)
                   .then("inc", [](int64_t& x) { return x + 1; })
                   .then("twice", [](int64_t& x) { return 2 * x; })
                   .then("dec", [](int64_t& x) { return x - 1; })
                   .to([&sum](int64_t x) { sum += x; })
                   .run(rt, {.batch = 512});
    auto report = run->wait(caf::timespan{60s});
    if (!report || !report->ok() || sum != n_items * n_items) {
      state.SkipWithError("pipeline failed or lost items");
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * n_items);
}

void pipeline3_loop(benchmark::State& state) {
  for (auto _ : state) {
    int64_t sum = 0;
    for (int64_t i = 0; i < n_items; ++i) {
      int64_t x = i;
      benchmark::DoNotOptimize(x = x + 1);
      benchmark::DoNotOptimize(x = 2 * x);
      benchmark::DoNotOptimize(x = x - 1);
      sum += x;
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * n_items);
}

// The same log as bench/peers/pipeline_data_report.py (64M, seed 3),
// removed at exit.
struct generated_log {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("bench_pipeline_" + std::to_string(::getpid()) + ".log"))
                         .string();
  generated_log() {
    access_log::generate(path, 64u << 20, 3);
  }
  ~generated_log() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

const std::string& log_file() {
  static const generated_log log;
  return log.path;
}

void data_pipeline_actorbus(benchmark::State& state) {
  auto& rt = shared_runtime();
  const auto& path = log_file();
  auto size = std::filesystem::file_size(path);
  for (auto _ : state) {
    auto agg = std::make_shared<access_log::aggregate>();
    auto run =
        access_log::make_plan(access_log::chunk_reader{path, 256 * 1024}, agg)
            .run(rt, {.batch = 1});
    auto report = run->wait(caf::timespan{120s});
    if (!report || !report->ok()) {
      state.SkipWithError("pipeline failed");
      return;
    }
    benchmark::DoNotOptimize(agg->report());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(size));
}

void data_pipeline_loop(benchmark::State& state) {
  const auto& path = log_file();
  auto size = std::filesystem::file_size(path);
  for (auto _ : state)
    benchmark::DoNotOptimize(access_log::reference_report(path));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(size));
}

} // namespace

BENCHMARK(pipeline3_actorbus)
    ->Name("pipeline3/actorbus")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK(pipeline3_loop)
    ->Name("pipeline3/single_thread_loop")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(data_pipeline_actorbus)
    ->Name("data_pipeline/actorbus")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK(data_pipeline_loop)
    ->Name("data_pipeline/single_thread_loop")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  {
    actorbus::runtime::runtime rt;
    the_runtime = &rt;
    benchmark::RunSpecifiedBenchmarks();
    the_runtime = nullptr;
  }
  benchmark::Shutdown();
  return 0;
}
