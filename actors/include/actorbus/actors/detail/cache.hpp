#pragma once

// Implementation of `actorbus::actors::cache` (actors/cache.hpp): the shard
// actor, its table and the cache's member templates. Not for direct use.

#include "actorbus/actors/cache.hpp"
#include "actorbus/actors/error.hpp"
#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace actorbus::actors {

namespace detail {

using cache_get_atom = caf::atom_constant<caf::atom("abCGet")>;
inline constexpr cache_get_atom cache_get_v{};
using cache_put_atom = caf::atom_constant<caf::atom("abCPut")>;
inline constexpr cache_put_atom cache_put_v{};
using cache_erase_atom = caf::atom_constant<caf::atom("abCErase")>;
inline constexpr cache_erase_atom cache_erase_v{};
using cache_claim_atom = caf::atom_constant<caf::atom("abCClaim")>;
inline constexpr cache_claim_atom cache_claim_v{};
using cache_fail_atom = caf::atom_constant<caf::atom("abCFail")>;
inline constexpr cache_fail_atom cache_fail_v{};
using cache_expire_atom = caf::atom_constant<caf::atom("abCExpire")>;
inline constexpr cache_expire_atom cache_expire_v{};
using cache_stats_atom = caf::atom_constant<caf::atom("abCStats")>;
inline constexpr cache_stats_atom cache_stats_v{};

using cache_drain_atom = caf::atom_constant<caf::atom("abCDrain")>;
inline constexpr cache_drain_atom cache_drain_v{};

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
    // hits, misses, evictions, expirations, computes
    std::array<uint64_t, 5> counters{};
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
        self->delayed_send(self, compute_timeout, cache_expire_v, key, ticket);
        rp.deliver(caf::make_message(cache_claim_v, ticket));
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
        cache_stats out;
        out.hits =
            st->counters[0] + tb->fast_hits.load(std::memory_order_relaxed);
        out.misses = st->counters[1];
        out.evictions = st->counters[2];
        out.expirations = st->counters[3];
        out.computes = st->counters[4];
        out.size = tb->map.size();
        return out;
      },
  };
}

} // namespace detail

template <class K, class V, class Hash>
cache<K, V, Hash>::cache(caf::actor_system& sys, cache_config cfg)
    : cache(sys, cfg, nullptr) {
  // nop
}

namespace detail {

/// The actor system of `rt`; throws when `rt` no longer accepts actors.
inline caf::actor_system& cache_system(runtime::runtime& rt) {
  if (!rt.accepting())
    throw std::runtime_error("cache: the runtime is shutting down");
  return rt.system();
}

} // namespace detail

template <class K, class V, class Hash>
cache<K, V, Hash>::cache(runtime::runtime& rt, cache_config cfg)
    : cache(detail::cache_system(rt), cfg, &rt) {
  // nop
}

template <class K, class V, class Hash>
cache<K, V, Hash>::cache(caf::actor_system& sys, cache_config cfg,
                         runtime::runtime* rt)
    : clock_(sys.clock())
    , callers_(sys)
    , cfg_(cfg) {
  if (cfg_.shards < 1)
    cfg_.shards = 1;
  auto per_shard = std::max<std::size_t>(1, cfg_.capacity / cfg_.shards);
  for (std::size_t i = 0; i < cfg_.shards; ++i) {
    tables_.push_back(std::make_shared<detail::cache_table<K, V>>());
    if (rt == nullptr) {
      shards_.push_back(sys.spawn(detail::cache_shard<K, V>, tables_.back(),
                                  per_shard, cfg_.ttl, cfg_.compute_timeout));
      continue;
    }
    auto shard = rt->spawn(detail::cache_shard<K, V>, tables_.back(), per_shard,
                           cfg_.ttl, cfg_.compute_timeout);
    if (!shard) {
      for (auto& s : shards_)
        caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
      throw std::runtime_error("cache: " + runtime::describe(shard.error()));
    }
    shards_.push_back(std::move(*shard));
  }
}

template <class K, class V, class Hash>
cache<K, V, Hash>::~cache() {
  for (auto& s : shards_)
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
}

template <class K, class V, class Hash>
caf::expected<std::optional<V>> cache<K, V, Hash>::get(const K& key,
                                                       caf::timespan timeout) {
  if (auto v = try_read(key))
    return v;
  auto r = callers_.with([&](runtime::caller& c) {
    return c.call<std::vector<V>>(shard(key), timeout, detail::cache_get_v,
                                  key);
  });
  if (!r)
    return std::move(r.error());
  if (r->empty())
    return std::optional<V>{};
  return std::optional<V>{std::move(r->front())};
}

template <class K, class V, class Hash>
void cache<K, V, Hash>::put(const K& key, const V& value) {
  auto i = index(key);
  tables_[i]->pending.fetch_add(1, std::memory_order_acq_rel);
  caf::anon_send(shards_[i], detail::cache_put_v, key, value);
}

template <class K, class V, class Hash>
void cache<K, V, Hash>::erase(const K& key) {
  auto i = index(key);
  tables_[i]->pending.fetch_add(1, std::memory_order_acq_rel);
  caf::anon_send(shards_[i], detail::cache_erase_v, key);
}

template <class K, class V, class Hash>
template <class F>
caf::expected<V> cache<K, V, Hash>::get_or_compute(const K& key, F fn,
                                                   caf::timespan timeout) {
  if (auto v = try_read(key))
    return std::move(*v);
  auto dest = caf::actor_cast<caf::strong_actor_ptr>(shard(key));
  auto reply = callers_.with([&](runtime::caller& c) {
    return c.call_impl(dest, caf::make_message(detail::cache_claim_v, key),
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
  } catch (...) {
    value = error_from_exception(std::current_exception());
  }
  if (value)
    put(key, *value);
  else
    caf::anon_send(shard(key), detail::cache_fail_v, key, value.error());
  return value;
}

template <class K, class V, class Hash>
caf::expected<cache_stats> cache<K, V, Hash>::stats(caf::timespan timeout) {
  cache_stats out;
  for (auto& s : shards_) {
    auto r = callers_.with([&](runtime::caller& c) {
      return c.call<cache_stats>(s, timeout, detail::cache_stats_v);
    });
    if (!r)
      return std::move(r.error());
    out.hits += r->hits;
    out.misses += r->misses;
    out.evictions += r->evictions;
    out.expirations += r->expirations;
    out.computes += r->computes;
    out.size += r->size;
  }
  return out;
}

template <class K, class V, class Hash>
std::optional<V> cache<K, V, Hash>::try_read(const K& key) {
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
    caf::anon_send(shards_[i], detail::cache_drain_v);
  return out;
}

} // namespace actorbus::actors
