// The seed's ThreadSafeCounter: threads increment one lock-free atomic count
// (actors reach the same count through the counter's actor).
//   counter [threads] [increments]

#include "actorbus/actors/guarded.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <fmt/core.h>

#include <cstdlib>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::atoi(argv[1]) : 8;
  int increments = argc > 2 ? std::atoi(argv[2]) : 10000;
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  actorbus::actors::counter count{sys};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < increments; ++i)
        count.increment();
    });
  for (auto& t : ts)
    t.join();
  auto n = count.get();
  fmt::print("counter: {} threads x {} increments = {}\n", threads, increments,
             n);
  return n == int64_t{threads} * increments ? 0 : 1;
}
