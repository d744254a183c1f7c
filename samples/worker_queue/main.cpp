// The seed's worker threads on a queue with sentinels: three worker actors
// pull items from one queue; shutdown (wait) plays the part of the None
// sentinels and the joins.
//   worker_queue [items]

#include "actorbus/actors/guarded.hpp"
#include "actorbus/actors/worker_pool.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"

#include <fmt/core.h>

#include <chrono>

using namespace actorbus::actors;

int main(int argc, char** argv) {
  int n = 100;
  CLI::App app{"Three workers take items from one queue until it is empty.",
               "worker_queue"};
  app.add_option("items", n, "items to process")
      ->capture_default_str()
      ->check(CLI::Range(0, 100'000'000));
  actorbus::runtime::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  actorbus::runtime::runtime rt{std::move(cfg)};
  auto& sys = rt.system();
  counter total{sys};
  auto wait = caf::timespan{std::chrono::seconds(10)};
  {
    worker_pool workers{sys, {.workers = 3}};
    // Add work to the queue.
    for (int item = 1; item <= n; ++item)
      workers.submit([&total, item] { total.increment(int64_t{item} * item); });
    // Signal the workers to exit once the queue is empty, and wait.
    if (auto err = workers.shutdown({.wait = true, .timeout = wait})) {
      fmt::print("worker_queue: shutdown failed: {}\n", sys.render(err));
      return 1;
    }
    fmt::print("worker_queue: 3 workers processed {} items, {} left running\n",
               workers.stats().completed, workers.stats().workers);
  }
  fmt::print("worker_queue: sum of squares 1..{} = {}\n", n, total.get());
  return 0;
}
