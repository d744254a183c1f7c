#pragma once

// A thread-safe LRU + TTL cache sharded by key across actors (the seed's
// exercise 1).
//
//   cache<std::string, int> sut{sys, {.capacity = 1000, .ttl = 60s}};
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

#include "actorbus/actors/caller_pool.hpp"

#include <caf/actor.hpp>
#include <caf/actor_clock.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
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
};

namespace detail {

using cache_get_atom = caf::atom_constant<caf::atom("abCGet")>;
using cache_put_atom = caf::atom_constant<caf::atom("abCPut")>;
using cache_erase_atom = caf::atom_constant<caf::atom("abCErase")>;
using cache_claim_atom = caf::atom_constant<caf::atom("abCClaim")>;
using cache_fail_atom = caf::atom_constant<caf::atom("abCFail")>;
using cache_expire_atom = caf::atom_constant<caf::atom("abCExpire")>;
using cache_stats_atom = caf::atom_constant<caf::atom("abCStats")>;

using cache_drain_atom = caf::atom_constant<caf::atom("abCDrain")>;

/// The entries of one shard. The shard actor alone changes them (under the
/// exclusive lock) and alone keeps the LRU order; any thread may read them
/// under the shared lock and records its hits in `recent`, a small lossy
/// ring the actor replays into the LRU order (the Caffeine approach).
template <class K, class V>
struct cache_table {
  struct entry {
    V value;
    caf::actor_clock::time_point expires;
    typename std::list<K>::iterator pos; // shard actor only
  };

  static constexpr std::size_t ring_size = 256;

  std::shared_mutex mtx;
  std::unordered_map<K, entry> map; // written under the exclusive lock
  std::list<K> lru;                 // front = most recent; actor only
  std::array<std::atomic<entry*>, ring_size> recent{};
  std::atomic<uint64_t> fast_hits{0};
  /// Puts and erases sent to the actor but not applied yet: while any are
  /// pending, reads take the actor's path, so that a get sees the writes
  /// that the same thread sent before it.
  std::atomic<int64_t> pending{0};
  std::atomic<bool> drain_asked{false};

  /// Records a hit on `e`; call under the shared lock. True when the
  /// caller should ask the actor to drain the ring.
  bool record(entry* e) {
    auto n = fast_hits.fetch_add(1, std::memory_order_relaxed);
    recent[n % ring_size].store(e, std::memory_order_release);
    return n % (ring_size / 2) == ring_size / 2 - 1 &&
           !drain_asked.exchange(true, std::memory_order_relaxed);
  }

  /// Replays the recorded hits into the LRU order; actor only. Entries
  /// are erased only after a drain under the exclusive lock, so every
  /// pointer in the ring is valid.
  void drain() {
    drain_asked.store(false, std::memory_order_relaxed);
    for (auto& slot : recent)
      if (auto e = slot.exchange(nullptr, std::memory_order_acquire))
        lru.splice(lru.begin(), lru, e->pos);
  }
};

/// One shard: entries, LRU order, flights of running computations.
template <class K, class V>
caf::behavior cache_shard(caf::event_based_actor* self,
                          std::shared_ptr<cache_table<K, V>> tb,
                          std::size_t capacity, caf::timespan ttl,
                          caf::timespan compute_timeout) {
  using entry = typename cache_table<K, V>::entry;
  struct flight {
    uint64_t ticket;
    std::vector<caf::response_promise> waiters;
  };
  struct state {
    std::unordered_map<K, flight> flights;
    uint64_t next_ticket = 1;
    std::vector<uint64_t> counters = std::vector<uint64_t>(6, 0);
  };
  auto st = std::make_shared<state>();
  // Removes entry `i`; drains first so no recorded hit points at it.
  auto remove = [tb](typename std::unordered_map<K, entry>::iterator i) {
    std::unique_lock<std::shared_mutex> guard{tb->mtx};
    tb->drain();
    tb->lru.erase(i->second.pos);
    tb->map.erase(i);
  };
  // Looks `key` up; counts a hit or a miss.
  auto lookup = [self, st, tb, ttl, remove](const K& key) -> entry* {
    auto i = tb->map.find(key);
    if (i == tb->map.end()) {
      ++st->counters[1];
      return nullptr;
    }
    if (ttl.count() > 0 && self->clock().now() >= i->second.expires) {
      remove(i);
      ++st->counters[1];
      ++st->counters[3];
      return nullptr;
    }
    tb->lru.splice(tb->lru.begin(), tb->lru, i->second.pos);
    ++st->counters[0];
    return &i->second;
  };
  auto store = [self, st, tb, ttl, capacity](const K& key, const V& value) {
    auto expires = self->clock().now() + ttl;
    std::unique_lock<std::shared_mutex> guard{tb->mtx};
    auto i = tb->map.find(key);
    if (i != tb->map.end()) {
      i->second.value = value;
      i->second.expires = expires;
      tb->lru.splice(tb->lru.begin(), tb->lru, i->second.pos);
      return;
    }
    if (tb->map.size() >= capacity && !tb->lru.empty()) {
      // Replay recent hits first: the victim is the true LRU entry.
      tb->drain();
      tb->map.erase(tb->lru.back());
      tb->lru.pop_back();
      ++st->counters[2];
    }
    tb->lru.push_front(key);
    tb->map.emplace(key, entry{value, expires, tb->lru.begin()});
  };
  // Answers every waiter of `key`'s flight with `msg`, ends the flight.
  auto land = [st](const K& key, const caf::message& msg) {
    auto i = st->flights.find(key);
    if (i == st->flights.end())
      return;
    for (auto& rp : i->second.waiters)
      rp.deliver(msg);
    st->flights.erase(i);
  };
  return {
      [lookup](cache_get_atom, const K& key) -> std::vector<V> {
        if (auto e = lookup(key))
          return {e->value};
        return {};
      },
      [tb, store, land](cache_put_atom, const K& key, const V& value) {
        store(key, value);
        tb->pending.fetch_sub(1, std::memory_order_release);
        land(key, caf::make_message(value));
      },
      [tb, remove](cache_erase_atom, const K& key) {
        auto i = tb->map.find(key);
        if (i != tb->map.end())
          remove(i);
        tb->pending.fetch_sub(1, std::memory_order_release);
      },
      [tb](cache_drain_atom) { tb->drain(); },
      // Reply: (value) on a hit or when a running computation lands, or
      // (claim_atom, ticket) when the caller must compute.
      [self, st, lookup, compute_timeout](cache_claim_atom, const K& key) {
        auto rp = self->make_response_promise();
        if (auto e = lookup(key)) {
          rp.deliver(caf::make_message(e->value));
          return;
        }
        auto i = st->flights.find(key);
        if (i != st->flights.end()) {
          i->second.waiters.push_back(std::move(rp));
          return;
        }
        auto ticket = st->next_ticket++;
        st->flights.emplace(key, flight{ticket, {}});
        ++st->counters[4];
        self->delayed_send(self, compute_timeout, cache_expire_atom::value, key,
                           ticket);
        rp.deliver(caf::make_message(cache_claim_atom::value, ticket));
      },
      [land](cache_fail_atom, const K& key, const caf::error& err) {
        land(key, caf::make_message(err));
      },
      [st, land](cache_expire_atom, const K& key, uint64_t ticket) {
        auto i = st->flights.find(key);
        if (i != st->flights.end() && i->second.ticket == ticket)
          land(key, caf::make_message(caf::make_error(
                        caf::sec::request_timeout,
                        "cache: the computation did not finish in time")));
      },
      [st, tb](cache_stats_atom) {
        auto out = st->counters;
        out[0] += tb->fast_hits.load(std::memory_order_relaxed);
        out[5] = tb->map.size();
        return out;
      },
  };
}

} // namespace detail

/// A sharded LRU + TTL cache owned by actors. Thread-safe; not copyable.
/// Shard actors stop when the cache is destroyed.
template <class K, class V, class Hash = std::hash<K>>
class cache {
public:
  cache(caf::actor_system& sys, cache_config cfg = {})
      : clock_(sys.clock())
      , callers_(sys)
      , cfg_(cfg) {
    if (cfg_.shards < 1)
      cfg_.shards = 1;
    auto per_shard = std::max<std::size_t>(1, cfg_.capacity / cfg_.shards);
    for (std::size_t i = 0; i < cfg_.shards; ++i) {
      tables_.push_back(std::make_shared<detail::cache_table<K, V>>());
      shards_.push_back(sys.spawn(detail::cache_shard<K, V>, tables_.back(),
                                  per_shard, cfg_.ttl, cfg_.compute_timeout));
    }
  }

  ~cache() {
    for (auto& s : shards_)
      caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  }

  cache(const cache&) = delete;
  cache& operator=(const cache&) = delete;

  /// The value of `key`, or an empty optional on a miss.
  caf::expected<std::optional<V>> get(const K& key, caf::timespan timeout) {
    if (auto v = try_read(key))
      return v;
    auto r = callers_.with([&](runtime::caller& c) {
      return c.call<std::vector<V>>(shard(key), timeout,
                                    detail::cache_get_atom::value, key);
    });
    if (!r)
      return std::move(r.error());
    if (r->empty())
      return std::optional<V>{};
    return std::optional<V>{std::move(r->front())};
  }

  /// Stores `value` under `key` (asynchronous; ordered with later calls
  /// from the same thread).
  void put(const K& key, const V& value) {
    auto i = index(key);
    tables_[i]->pending.fetch_add(1, std::memory_order_acq_rel);
    caf::anon_send(shards_[i], detail::cache_put_atom::value, key, value);
  }

  /// Removes `key` (asynchronous; ordered like `put`).
  void erase(const K& key) {
    auto i = index(key);
    tables_[i]->pending.fetch_add(1, std::memory_order_acq_rel);
    caf::anon_send(shards_[i], detail::cache_erase_atom::value, key);
  }

  /// The value of `key`; on a miss, `fn()` (returning V or
  /// caf::expected<V>) computes it once for all concurrent callers.
  template <class F>
  caf::expected<V> get_or_compute(const K& key, F fn, caf::timespan timeout) {
    if (auto v = try_read(key))
      return std::move(*v);
    auto dest = caf::actor_cast<caf::strong_actor_ptr>(shard(key));
    auto reply = callers_.with([&](runtime::caller& c) {
      return c.call_impl(
          dest, caf::make_message(detail::cache_claim_atom::value, key),
          timeout);
    });
    if (!reply)
      return std::move(reply.error());
    if (reply->template match_elements<V>())
      return reply->template get_as<V>(0);
    if (reply->template match_elements<caf::error>())
      return reply->template get_as<caf::error>(0);
    if (!reply->template match_elements<detail::cache_claim_atom, uint64_t>())
      return caf::make_error(caf::sec::unexpected_response,
                             "cache: unexpected reply");
    caf::expected<V> value = caf::make_error(caf::sec::runtime_error);
    try {
      value = caf::expected<V>{fn()};
    } catch (const std::exception& e) {
      value = caf::make_error(caf::sec::runtime_error, e.what());
    }
    if (value)
      put(key, *value);
    else
      caf::anon_send(shard(key), detail::cache_fail_atom::value, key,
                     value.error());
    return value;
  }

  /// Counters summed over the shards.
  caf::expected<cache_stats> stats(caf::timespan timeout) {
    cache_stats out;
    for (auto& s : shards_) {
      auto r = callers_.with([&](runtime::caller& c) {
        return c.call<std::vector<uint64_t>>(s, timeout,
                                             detail::cache_stats_atom::value);
      });
      if (!r)
        return std::move(r.error());
      out.hits += (*r)[0];
      out.misses += (*r)[1];
      out.evictions += (*r)[2];
      out.expirations += (*r)[3];
      out.computes += (*r)[4];
      out.size += (*r)[5];
    }
    return out;
  }

private:
  std::size_t index(const K& key) const {
    return Hash{}(key) % shards_.size();
  }

  const caf::actor& shard(const K& key) const {
    return shards_[index(key)];
  }

  /// The fast path: a hit read under the shard's shared lock, with no
  /// message to the shard. Nothing on a miss, an expired entry or while
  /// writes to the shard are pending: the caller asks the shard then.
  std::optional<V> try_read(const K& key) {
    auto i = index(key);
    auto& tb = *tables_[i];
    if (tb.pending.load(std::memory_order_acquire) != 0)
      return std::nullopt;
    std::shared_lock<std::shared_mutex> guard{tb.mtx};
    auto e = tb.map.find(key);
    if (e == tb.map.end())
      return std::nullopt;
    if (cfg_.ttl.count() > 0 && clock_.now() >= e->second.expires)
      return std::nullopt;
    std::optional<V> out{e->second.value};
    auto ask = tb.record(&e->second);
    guard.unlock();
    if (ask)
      caf::anon_send(shards_[i], detail::cache_drain_atom::value);
    return out;
  }

  caf::actor_clock& clock_;
  caller_pool callers_;
  cache_config cfg_;
  std::vector<std::shared_ptr<detail::cache_table<K, V>>> tables_;
  std::vector<caf::actor> shards_;
};

} // namespace actorbus::actors
