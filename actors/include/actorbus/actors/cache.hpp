#pragma once

// A thread-safe LRU + TTL cache sharded by key across actors (the seed's
// exercise 1).
//
//   cache<std::string, int> sut{rt, {.capacity = 1000, .ttl = 60s}};
//   sut.put("a", 1);
//   caf::expected<std::optional<int>> v = sut.get("a", 1s);
//   caf::expected<int> w = sut.get_or_compute("b", [] { return load_b(); },
//                                             1s);
//
// Each shard is an actor that owns its entries; a key always lives in shard
// hash(key) % shards. `capacity` is per cache and split evenly over the
// shards; inserting into a full shard evicts its least recently used entry.
// An entry older than `ttl` is gone (counted as a miss and an expiry).
// Times are on the actor clock.
//
// Reads take a fast path: a hit is read by the calling thread under the
// shard's shared lock, with no message to the shard, and recorded in a small
// lossy ring that the shard replays into its LRU order before it evicts (so
// under very heavy reads a few hits may not refresh their entry). Misses,
// expired entries, writes and computations go through the shard actor. A
// get that follows a put or erase from the same thread sees it: while a
// shard has writes in flight, its reads go through the actor too.
//
// Single flight: concurrent `get_or_compute` calls that miss on one key
// compute once. The first caller is told to compute (on its own thread, so
// the shard never blocks); the others wait in the shard for the value, which
// reaches them all when the first caller stores it. If the computing caller
// fails, every waiter gets its error; if it never answers, the claim expires
// after `compute_timeout` and the waiters get `caf::sec::request_timeout`.
//
// Keys and values travel in CAF messages: they must be copyable and, for
// CAF 0.17, have an `inspect` overload or be standard types (strings,
// numbers, vectors of those). Every call blocks the calling thread for at
// most its timeout: call them from plain threads, not inside handlers.
//
// Lifetime: the shard actors stop when the cache is destroyed. A cache made
// with a `runtime::runtime` is tracked by it: the runtime's shutdown stops
// the shards even while the cache object still exists (its calls then fail
// with an error); a cache made on a bare `caf::actor_system` must be
// destroyed before that system.

#include "actorbus/actors/caller_pool.hpp"
#include "actorbus/runtime/fwd.hpp"

#include <caf/actor.hpp>
#include <caf/actor_clock.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/response_promise.hpp>
#include <caf/send.hpp>
#include <caf/timespan.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace actorbus::actors {

/// Settings of a cache.
struct cache_config {
  /// Most entries in the whole cache (split over the shards; >= shards).
  std::size_t capacity = 1024;
  /// Lifetime of an entry; zero = no expiry.
  caf::timespan ttl = caf::timespan{0};
  /// Number of shard actors (>= 1).
  std::size_t shards = 4;
  /// How long other callers wait for a claimed computation.
  caf::timespan compute_timeout = std::chrono::seconds(30);
};

/// Counters summed over the shards.
struct cache_stats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
  uint64_t expirations = 0;
  uint64_t computes = 0; ///< computations started by get_or_compute
  uint64_t size = 0;

  friend bool operator==(const cache_stats&, const cache_stats&) = default;
};

/// Lets CAF serialize and print `cache_stats` (the reply of a shard).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_stats& x) {
  return f(caf::meta::type_name("cache_stats"), x.hits, x.misses, x.evictions,
           x.expirations, x.computes, x.size);
}

namespace detail {

template <class K, class V>
struct cache_table;

} // namespace detail

/// A sharded LRU + TTL cache owned by actors, for plain threads: `get`,
/// `put`, `erase`, single-flight `get_or_compute`, `stats`. Thread-safe;
/// not copyable. Shard actors stop when the cache is destroyed.
template <class K, class V, class Hash = std::hash<K>>
class cache {
public:
  /// Spawns the shards on `sys`; destroy the cache before `sys`.
  explicit cache(caf::actor_system& sys, cache_config cfg = {});

  /// Spawns the shards on `rt`'s system, tracked by `rt`, so the runtime's
  /// shutdown stops them. Throws `std::runtime_error` when `rt` is shutting
  /// down already.
  explicit cache(runtime::runtime& rt, cache_config cfg = {});

  ~cache();

  cache(const cache&) = delete;
  cache& operator=(const cache&) = delete;

  /// The value of `key`, or an empty optional on a miss.
  caf::expected<std::optional<V>> get(const K& key, caf::timespan timeout);

  /// Stores `value` under `key` (asynchronous; ordered with later calls
  /// from the same thread).
  void put(const K& key, const V& value);

  /// Removes `key` (asynchronous; ordered like `put`).
  void erase(const K& key);

  /// The value of `key`; on a miss, `fn()` (returning V or
  /// caf::expected<V>) computes it once for all concurrent callers. An
  /// exception from `fn` becomes `caf::sec::runtime_error` with its
  /// `what()`, for this caller and every waiter.
  template <class F>
  caf::expected<V> get_or_compute(const K& key, F fn, caf::timespan timeout);

  /// Counters summed over the shards.
  caf::expected<cache_stats> stats(caf::timespan timeout);

private:
  cache(caf::actor_system& sys, cache_config cfg, runtime::runtime* rt);

  std::size_t index(const K& key) const {
    return Hash{}(key) % shards_.size();
  }

  const caf::actor& shard(const K& key) const {
    return shards_[index(key)];
  }

  /// The fast path: a hit read under the shard's shared lock, with no
  /// message to the shard. Nothing on a miss, an expired entry or while
  /// writes to the shard are pending: the caller asks the shard then.
  std::optional<V> try_read(const K& key);

  caf::actor_clock& clock_;
  caller_pool callers_;
  cache_config cfg_;
  std::vector<std::shared_ptr<detail::cache_table<K, V>>> tables_;
  std::vector<caf::actor> shards_;
};

} // namespace actorbus::actors

#include "actorbus/actors/detail/cache.hpp"
