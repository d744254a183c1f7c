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
// Each shard is an actor that owns its entries, so no lock is shared between
// callers; a key always lives in shard hash(key) % shards. `capacity` is per
// cache and split evenly over the shards; inserting into a full shard
// evicts its least recently used entry. An entry older than `ttl` is gone
// (counted as a miss and an expiry). Times are on the actor clock.
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
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/response_promise.hpp>
#include <caf/send.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
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

/// One shard: entries, LRU order, flights of running computations.
template <class K, class V>
caf::behavior cache_shard(caf::event_based_actor* self, std::size_t capacity,
                          caf::timespan ttl, caf::timespan compute_timeout) {
  struct entry {
    V value;
    caf::actor_clock::time_point expires;
    typename std::list<K>::iterator pos;
  };
  struct flight {
    uint64_t ticket;
    std::vector<caf::response_promise> waiters;
  };
  struct state {
    std::list<K> lru; // front = most recent
    std::unordered_map<K, entry> map;
    std::unordered_map<K, flight> flights;
    uint64_t next_ticket = 1;
    std::vector<uint64_t> counters = std::vector<uint64_t>(6, 0);
  };
  auto st = std::make_shared<state>();
  // Looks `key` up; counts a hit or a miss.
  auto lookup = [self, st, ttl](const K& key) -> entry* {
    auto i = st->map.find(key);
    if (i == st->map.end()) {
      ++st->counters[1];
      return nullptr;
    }
    if (ttl.count() > 0 && self->clock().now() >= i->second.expires) {
      st->lru.erase(i->second.pos);
      st->map.erase(i);
      ++st->counters[1];
      ++st->counters[3];
      return nullptr;
    }
    st->lru.splice(st->lru.begin(), st->lru, i->second.pos);
    ++st->counters[0];
    return &i->second;
  };
  auto store = [self, st, ttl, capacity](const K& key, const V& value) {
    auto expires = self->clock().now() + ttl;
    auto i = st->map.find(key);
    if (i != st->map.end()) {
      i->second.value = value;
      i->second.expires = expires;
      st->lru.splice(st->lru.begin(), st->lru, i->second.pos);
      return;
    }
    if (st->map.size() >= capacity && !st->lru.empty()) {
      st->map.erase(st->lru.back());
      st->lru.pop_back();
      ++st->counters[2];
    }
    st->lru.push_front(key);
    st->map.emplace(key, entry{value, expires, st->lru.begin()});
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
      [store, land](cache_put_atom, const K& key, const V& value) {
        store(key, value);
        land(key, caf::make_message(value));
      },
      [st](cache_erase_atom, const K& key) {
        auto i = st->map.find(key);
        if (i != st->map.end()) {
          st->lru.erase(i->second.pos);
          st->map.erase(i);
        }
      },
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
      [st](cache_stats_atom) {
        auto out = st->counters;
        out[5] = st->map.size();
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
      : callers_(sys)
      , cfg_(cfg) {
    if (cfg_.shards < 1)
      cfg_.shards = 1;
    auto per_shard = std::max<std::size_t>(1, cfg_.capacity / cfg_.shards);
    for (std::size_t i = 0; i < cfg_.shards; ++i)
      shards_.push_back(sys.spawn(detail::cache_shard<K, V>, per_shard,
                                  cfg_.ttl, cfg_.compute_timeout));
  }

  ~cache() {
    for (auto& s : shards_)
      caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  }

  cache(const cache&) = delete;
  cache& operator=(const cache&) = delete;

  /// The value of `key`, or an empty optional on a miss.
  caf::expected<std::optional<V>> get(const K& key, caf::timespan timeout) {
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
    caf::anon_send(shard(key), detail::cache_put_atom::value, key, value);
  }

  /// Removes `key` (asynchronous).
  void erase(const K& key) {
    caf::anon_send(shard(key), detail::cache_erase_atom::value, key);
  }

  /// The value of `key`; on a miss, `fn()` (returning V or
  /// caf::expected<V>) computes it once for all concurrent callers.
  template <class F>
  caf::expected<V> get_or_compute(const K& key, F fn, caf::timespan timeout) {
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
  const caf::actor& shard(const K& key) const {
    return shards_[Hash{}(key) % shards_.size()];
  }

  caller_pool callers_;
  cache_config cfg_;
  std::vector<caf::actor> shards_;
};

} // namespace actorbus::actors
