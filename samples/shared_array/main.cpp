// Seed pattern "Shared Memory": a SharedArray that one process creates and
// others attach to by name; the creator unlinks it at the end. Worker
// processes each fill their rows; the parent sums what they wrote.
//
// Usage: shared_array [rows] [cols] [workers]   (default 8 1000 2)

#include "actorbus/ipc/shared_array.hpp"

#include "shared_array.hpp"

#include <fmt/core.h>

#include <cstdlib>
#include <numeric>
#include <string>
#include <unistd.h>

namespace ipc = actorbus::ipc;
using actorbus::samples::shared_array::run_workers;

int main(int argc, char** argv) {
  size_t rows = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 8;
  size_t cols = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 1000;
  size_t workers = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 2;
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
