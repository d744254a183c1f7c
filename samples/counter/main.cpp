// The seed's ThreadSafeCounter: threads increment one lock-free atomic count
// (actors reach the same count through the counter's actor).
//   counter [threads] [increments]

#include "actorbus/actors/guarded.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"

#include <fmt/core.h>

#include <thread>
#include <vector>

int main(int argc, char** argv) {
  int threads = 8;
  int increments = 10000;
  CLI::App app{"Threads increment one shared counter.", "counter"};
  app.add_option("threads", threads, "incrementing threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  app.add_option("increments", increments, "increments per thread")
      ->capture_default_str()
      ->check(CLI::Range(0, 100'000'000));
  actorbus::runtime::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  actorbus::runtime::runtime rt{std::move(cfg)};
  actorbus::actors::counter count{rt.system()};
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
