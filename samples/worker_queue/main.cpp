// The seed's worker threads on a queue with sentinels: three worker actors
// pull items from one queue; shutdown (wait) plays the part of the None
// sentinels and the joins.
//   worker_queue [items]

#include "actorbus/actors/guarded.hpp"
#include "actorbus/actors/worker_pool.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <fmt/core.h>

#include <chrono>
#include <cstdlib>

using namespace actorbus::actors;

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 100;
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
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
