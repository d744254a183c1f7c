// Seed pattern "Shared Memory": a SharedArray that one process creates and
// others attach to by name; the creator unlinks it at the end. Worker
// processes each fill their rows; the parent sums what they wrote.
//
// Usage: shared_array [rows] [cols] [workers]   (default 8 1000 2)

#include "actorbus/ipc/shared_array.hpp"

#include "command_line.hpp"
#include "shared_array.hpp"

#include <fmt/core.h>

#include <numeric>
#include <string>
#include <unistd.h>

namespace ipc = actorbus::ipc;
using actorbus::samples::shared_array::run_workers;

int main(int argc, char** argv) {
  size_t rows = 8;
  size_t cols = 1000;
  size_t workers = 2;
  CLI::App app{"Worker processes fill the rows of an array in shared memory; "
               "the parent sums them.",
               "shared_array"};
  app.add_option("rows", rows, "rows of the array")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}));
  app.add_option("cols", cols, "columns of the array")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}));
  app.add_option("workers", workers, "worker processes")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1024}));
  if (auto rc = actorbus::samples::parse_command_line(app, argc, argv))
    return *rc;
  auto name = "actorbus-shared-array-" + std::to_string(::getpid());
  // Like the seed: attach if it exists, create otherwise.
  auto array = ipc::shared_array<double>::create_or_attach(name, {rows, cols});
  if (!array) {
    fmt::print(stderr, "shared_array: {}\n", ipc::describe(array.error()));
    return 1;
  }
  fmt::print("created '{}' shape ({}, {}) of f64, creator: {}\n", name, rows,
             cols, array->is_creator());
  int failed = run_workers(name, rows, cols, workers);
  auto data = array->data();
  auto total = std::accumulate(data.begin(), data.end(), 0.0);
  fmt::print("{} workers filled {} elements, {} failed\n", workers, data.size(),
             failed);
  fmt::print("sum of elements = {:.0f}\n", total);
  array->close(); // the creator unlinks
  auto gone = ipc::shared_array<double>::attach(name);
  fmt::print("after unlink: {}\n",
             gone ? "still there" : ipc::describe(gone.error()));
  return failed == 0 ? 0 : 1;
}
