// Exercise 1, a thread-safe cache: LRU capacity, TTL, and single-flight
// get_or_compute shared by many threads.
//   cache [threads]

#include "actorbus/actors/cache.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace actorbus::actors;

int main(int argc, char** argv) {
  int threads = 100;
  CLI::App app{"A thread-safe LRU cache: many threads ask for one key at "
               "once and it is computed once.",
               "cache"};
  app.add_option("threads", threads, "threads asking at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  actorbus::runtime::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  actorbus::runtime::runtime rt{std::move(cfg)};
  auto wait = caf::timespan{std::chrono::seconds(10)};
  cache<std::string, int> store{rt.system(), {.capacity = 4, .shards = 1}};
  std::atomic<int> computed{0};
  std::atomic<long> total{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      auto v = store.get_or_compute(
          "answer",
          [&] {
            ++computed;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            return 42;
          },
          wait);
      if (v)
        total += *v;
    });
  for (auto& t : ts)
    t.join();
  fmt::print("cache: {} threads asked for one key, computed {} time(s), "
             "sum {}\n",
             threads, computed.load(), total.load());
  for (int i = 0; i < 6; ++i)
    store.put("k" + std::to_string(i), i); // capacity 4: evicts 3
  auto st = store.stats(wait);
  if (!st)
    return 1;
  fmt::print("cache: size {} evictions {} hits {} misses {}\n", st->size,
             st->evictions, st->hits, st->misses);
  return computed.load() == 1 ? 0 : 1;
}
