#pragma once

// The core of an event bus: topics with cached subscriber lists, the
// pattern index, retained values, and the subscriptions.
//
// Locking, outermost first: bus_core::mtx_ (shared for publish, exclusive
// for subscribe/unsubscribe), then subscriber_state::delivering_, then
// subscriber_state::mtx_. A publisher holds no bus lock while it pushes into
// queues or waits for room.

#include "actorbus/bus/event_bus.hpp"
#include "actorbus/runtime/fwd.hpp"

#include "line_allocator.hpp"
#include "topic_entry.hpp"
#include "topic_index.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/behavior.hpp>
#include <caf/error.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/message.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace actorbus::bus::detail {

/// A new generation, never handed out before in this process.
std::uint64_t next_generation() noexcept;

// On cache lines of its own (see line_allocator): publishers read it per
// event.
class alignas(cache_line) bus_core
    : public std::enable_shared_from_this<bus_core> {
public:
  /// A core whose couriers run on `sys`; with `rt`, they are spawned by
  /// and tracked in that runtime (then `sys` is its system, or null when
  /// the runtime was shutting down already).
  bus_core(caf::actor_system* sys, runtime::runtime* rt, bus_config cfg);

  /// With a runtime: spawns the sentinel, a tracked actor whose exit (the
  /// runtime's shutdown) closes the bus. Call once, right after creation.
  void watch_runtime();

  /// Publishes; a publish on the dead-letter topic never blocks and never
  /// dead-letters.
  caf::error publish(std::string_view topic, caf::message event,
                     caf::actor_addr publisher, publish_options opts,
                     std::shared_ptr<gather_sink> sink, std::size_t* asked);

  caf::expected<subscription> subscribe(std::string_view pattern, handler_fn fn,
                                        caf::actor who,
                                        subscription_options opts);

  /// Removes `sub` from the index and the bus (idempotent).
  void remove(subscriber_state* sub);

  /// Deactivates and removes `sub`, turns its queued events into dead
  /// letters with the detail `why`, then waits for the acknowledgements of
  /// events in flight to an actor until `ack_deadline`. Returns whether
  /// nothing more can arrive (see subscription::cancel).
  bool unsubscribe(const std::shared_ptr<subscriber_state>& sub,
                   const char* why,
                   std::chrono::steady_clock::time_point deadline,
                   std::chrono::steady_clock::time_point ack_deadline);

  /// Publishes a dead letter for `x` (counted on its topic).
  void dead_letter(const item& x, dead_letter_reason reason,
                   const std::string& pattern, std::string detail);

  topic_stats stats(std::string_view topic);
  std::vector<std::pair<std::string, topic_stats>> all_stats();
  std::size_t subscription_count() const;
  caf::message retained(std::string_view topic) const;
  bool clear_retained(std::string_view topic);
  void close();

  // Null only for a bus made on a runtime that was shutting down already.
  caf::actor_system* const sys_;
  // Null for a bus made on a plain actor system.
  runtime::runtime* const rt_;
  const bus_config cfg_;
  // Set by close() and by the runtime's shutdown: publish and subscribe
  // fail with errc::closed.
  std::atomic<bool> closed_{false};

private:
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view x) const noexcept {
      return std::hash<std::string_view>{}(x);
    }
  };

  using subs_ptr = std::shared_ptr<const subscriber_list>;

  /// Finds the entry of `topic`, creating it and refreshing its subscriber
  /// list as needed. Returns the entry and its subscribers.
  caf::expected<std::pair<topic_entry*, subs_ptr>> lookup(std::string_view);

  /// Rebuilds `e.subs_` (exclusive lock held).
  void refresh(topic_entry& e);

  /// The behavior of the sentinel (see watch_runtime).
  static caf::behavior sentinel(caf::event_based_actor* self,
                                std::weak_ptr<bus_core> weak);

  /// Spawns the courier of `state`, tracked by the runtime if there is one.
  caf::expected<caf::actor>
  spawn_courier(const std::shared_ptr<subscriber_state>& state);

  mutable std::shared_mutex mtx_;
  topic_index index_;
  std::unordered_map<std::string, std::unique_ptr<topic_entry>, string_hash,
                     std::equal_to<>>
      topics_;
  // Renewed by every subscribe and unsubscribe; entries with an older
  // generation rebuild their subscriber list on the next publish. Written
  // under the exclusive lock; read without it by the per-thread cache.
  std::atomic<std::uint64_t> generation_{next_generation()};
  std::unordered_map<subscriber_state*, std::shared_ptr<subscriber_state>>
      subs_;
  mutable std::mutex retained_mtx_;
  // Set once close() began (closed_ may be set earlier by the runtime).
  std::atomic<bool> closing_{false};
  // With a runtime: the sentinel, until close() stops it or it exits.
  std::mutex sentinel_mtx_;
  caf::actor sentinel_;
};

} // namespace actorbus::bus::detail
