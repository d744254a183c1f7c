// Seed pattern "Process Pool": cpu_bound_task mapped over a list of numbers
// by a pool with one worker process per core, compared with running the
// same list in this process.
//
// Usage: process_pool [tasks] [n] [workers]   (default 16 2000000 cores)

#include "actorbus/ipc/process_pool.hpp"

#include "command_line.hpp"

#include <fmt/core.h>

#include <chrono>
#include <numeric>
#include <thread>
#include <vector>

namespace ipc = actorbus::ipc;

namespace {

// The seed's cpu_bound_task: sum(i * i for i in range(n)), with wrap-around
// arithmetic so large n stays defined.
int64_t cpu_bound_task(int64_t n) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < static_cast<uint64_t>(n); ++i)
    sum += i * i;
  return static_cast<int64_t>(sum);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
      .count();
}

} // namespace

int main(int argc, char** argv) {
  size_t tasks = 16;
  int64_t n = 2'000'000;
  ipc::process_pool_options opts;
  opts.workers = std::thread::hardware_concurrency();
  CLI::App app{"cpu_bound_task mapped over numbers by a pool of worker "
               "processes, compared with one process.",
               "process_pool"};
  app.add_option("tasks", tasks, "numbers to map")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}));
  app.add_option("n", n, "the first number (the work of one task)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("workers", opts.workers, "worker processes (default: cores)")
      ->check(CLI::Range(size_t{1}, size_t{1024}));
  if (auto rc = actorbus::samples::parse_command_line(app, argc, argv))
    return *rc;
  std::vector<int64_t> numbers(tasks);
  for (size_t i = 0; i < tasks; ++i)
    numbers[i] = n + static_cast<int64_t>(i);
  ipc::process_pool<int64_t, int64_t> pool{cpu_bound_task, opts};
  if (pool.start_error()) {
    fmt::print("process_pool: {}\n", ipc::describe(pool.start_error()));
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto results = pool.map(numbers);
  auto parallel = seconds_since(t0);
  if (!results) {
    fmt::print("process_pool: {}\n", ipc::describe(results.error()));
    return 1;
  }
  t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> expected;
  for (auto x : numbers)
    expected.push_back(cpu_bound_task(x));
  auto sequential = seconds_since(t0);
  auto checksum = std::accumulate(
      results->begin(), results->end(), uint64_t{0},
      [](uint64_t acc, int64_t x) { return acc ^ static_cast<uint64_t>(x); });
  fmt::print("{} tasks on {} worker processes\n", tasks, pool.size());
  fmt::print("cpu_bound_task({}) = {}\n", numbers[0], results->front());
  fmt::print("results match sequential run: {}\n",
             *results == expected ? "yes" : "NO");
  fmt::print("checksum {:016x}\n", checksum);
  fmt::print("pool {:.3f} s, sequential {:.3f} s, speed-up {:.2f}x\n", parallel,
             sequential, sequential / parallel);
  return *results == expected ? 0 : 1;
}
