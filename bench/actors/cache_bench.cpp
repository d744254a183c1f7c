// Cache gets (hits on 1,000 keys) from one thread: the actor-sharded cache
// against a mutex-guarded LRU map. The Python peer (the seed's exercise 1 as
// a lock-guarded OrderedDict) is bench/peers/actors_cache.py.

#include "actorbus/actors/cache.hpp"
#include "actorbus/runtime/config.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace {

using namespace actorbus::actors;

constexpr int n_keys = 1000;

void BM_cache_get_actorbus(benchmark::State& state) {
  actorbus::runtime::runtime_config cfg;
  caf::actor_system sys{cfg};
  cache<int, int> c{sys, {.capacity = 2 * n_keys, .shards = 4}};
  for (int i = 0; i < n_keys; ++i)
    c.put(i, i);
  // A round trip to every shard: the puts before it are applied.
  if (!c.stats(std::chrono::seconds(5)))
    state.SkipWithError("cache did not answer");
  int k = 0;
  for (auto _ : state) {
    auto r = c.get(k, std::chrono::seconds(5));
    if (!r || !*r)
      state.SkipWithError("miss");
    k = (k + 1) % n_keys;
  }
  state.SetItemsProcessed(state.iterations());
}

/// The usual alternative: an LRU map behind one mutex.
class mutex_lru {
public:
  explicit mutex_lru(size_t cap)
      : cap_(cap) {}
  void put(int k, int v) {
    std::lock_guard<std::mutex> g{m_};
    auto i = map_.find(k);
    if (i != map_.end()) {
      i->second.first = v;
      lru_.splice(lru_.begin(), lru_, i->second.second);
      return;
    }
    if (map_.size() >= cap_) {
      map_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(k);
    map_.emplace(k, std::make_pair(v, lru_.begin()));
  }
  std::optional<int> get(int k) {
    std::lock_guard<std::mutex> g{m_};
    auto i = map_.find(k);
    if (i == map_.end())
      return std::nullopt;
    lru_.splice(lru_.begin(), lru_, i->second.second);
    return i->second.first;
  }

private:
  std::mutex m_;
  size_t cap_;
  std::list<int> lru_;
  std::unordered_map<int, std::pair<int, std::list<int>::iterator>> map_;
};

void BM_cache_get_mutex_lru(benchmark::State& state) {
  mutex_lru c{2 * n_keys};
  for (int i = 0; i < n_keys; ++i)
    c.put(i, i);
  int k = 0;
  for (auto _ : state) {
    auto r = c.get(k);
    if (!r)
      state.SkipWithError("miss");
    benchmark::DoNotOptimize(r);
    k = (k + 1) % n_keys;
  }
  state.SetItemsProcessed(state.iterations());
}

} // namespace

BENCHMARK(BM_cache_get_actorbus)
    ->Name("cache_get/actorbus")
    ->Iterations(1000000)
    ->UseRealTime();
BENCHMARK(BM_cache_get_mutex_lru)
    ->Name("cache_get/mutex_lru")
    ->Iterations(1000000)
    ->UseRealTime();

BENCHMARK_MAIN();
