#pragma once

// The state of one subscription: its bounded queue and its courier.
//
// Locking, outermost first: bus_core::mtx_, then delivering_, then mtx_.

#include "actorbus/bus/event_bus.hpp"

#include "item_ring.hpp"
#include "line_allocator.hpp"
#include "spin_lock.hpp"
#include "topic_entry.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/message.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace actorbus::bus::detail {

/// Asks a courier to drain its subscription's queue.
using drain_atom = caf::atom_constant<caf::atom("drain")>;

inline constexpr drain_atom drain_v{};

/// Result of offering an item to one subscription.
enum class push_result { queued, dropped, refused, inactive };

class subscriber_state {
public:
  subscriber_state(std::shared_ptr<bus_core> core, std::string pattern,
                   handler_fn fn, caf::actor target, subscription_options opts)
      : core_(std::move(core))
      , pattern_(std::move(pattern))
      , fn_(std::move(fn))
      , target_(target.address())
      , is_actor_(static_cast<bool>(target))
      , opts_(opts) {
    // nop
  }

  /// The behavior of this subscription's courier actor.
  static caf::behavior courier(caf::event_based_actor* self,
                               std::shared_ptr<subscriber_state> state);

  /// Offers `x`; `may_block` is false for dead letters and for publishers
  /// that must not wait. The dead letter for a drop goes to `evicted`.
  push_result push(item&& x, bool may_block, std::optional<item>& evicted,
                   dead_letter_reason& why);

  /// Handles one drain message inside the courier.
  void drain(caf::event_based_actor* self);

  /// Deactivates (see subscription::cancel): nothing is sent or called
  /// after it returns, except what is already in flight to an actor.
  /// Returns the items still queued. Waits for a running callback until
  /// `deadline`.
  /// `idle` (optional) tells whether no callback was running at the end.
  std::vector<item> deactivate(std::chrono::steady_clock::time_point deadline,
                               bool* idle = nullptr);

  /// Waits until every event in flight to the subscribed actor has been
  /// acknowledged (handled, failed or bounced), at most until `deadline`,
  /// then stops the courier. Returns whether nothing more can arrive. Does
  /// not wait when called from the subscribed actor itself (its mailbox
  /// cannot move while it waits) or from the courier.
  bool await_acks(std::chrono::steady_clock::time_point deadline);

  /// Called when the courier terminated for any reason. When something
  /// other than the bus stopped it (the runtime's shutdown), the
  /// subscription goes inactive: publishers no longer queue or wait for
  /// it, and cancel no longer waits for acknowledgements.
  void courier_stopped();

  /// Whether the calling thread runs the subscribed actor right now.
  bool on_subscriber_thread() const;

  std::chrono::steady_clock::time_point cancel_deadline() const {
    return std::chrono::steady_clock::now() + opts_.cancel_timeout;
  }

  /// Counts a delivery of `x`.
  void count_delivered(const item& x) noexcept {
    delivered_.fetch_add(1, std::memory_order_relaxed);
    x.topic->delivered_.fetch_add(1, std::memory_order_relaxed);
  }

  // The layout keeps what a publisher touches per event (the lock, the
  // queue's indices, the flags) on one cache line, and what the courier
  // writes per event or per batch off it: a publisher and a courier
  // running on two cores then pass one line back and forth per batch
  // instead of several per event.

  // Read-mostly.
  std::shared_ptr<bus_core> core_;
  const std::string pattern_;
  handler_fn fn_;
  // Weak, so that a subscription handle may outlive the actor system.
  const caf::actor_addr target_;
  const bool is_actor_;
  const subscription_options opts_;
  std::atomic<bool> active_{true};
  // Set when the subscribed actor died, or the courier stopped: nothing can
  // be acknowledged any more.
  std::atomic<bool> target_down_{false};
  // Prebuilt, shared by every drain request.
  const caf::message drain_msg_ = caf::make_message(drain_v);

  // Taken per publish and per drained batch; waits use the _any variables.
  alignas(cache_line) mutable spin_lock mtx_;
  bool scheduled_ = false;
  // Items taken out of the queue and not finished yet; they count toward
  // the capacity, so a stalled subscriber holds at most `capacity` events.
  std::size_t in_progress_ = 0;
  std::size_t waiting_ = 0;
  item_ring<item> queue_;
  caf::actor courier_;

  // Written by the courier per batch (and by publishers on drops).
  alignas(cache_line) std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::condition_variable_any not_full_;
  // Signalled when an actor acknowledges an event while a cancel waits.
  std::condition_variable_any acked_;

  // Owned by the courier.
  // Held while checking `active_` and running one callback (or sending one
  // event to the actor), so that cancel can wait for a running callback.
  alignas(cache_line) std::timed_mutex delivering_;
  // The batch being handled (actor subscribers).
  std::vector<item> batch_;
  // The events taken out of the queue and not handled yet (callback
  // subscribers). Guarded by `delivering_`.
  item_ring<item> taken_;
  // Empty drains in a row (see drain).
  std::size_t idle_passes_ = 0;

private:
  void drain_callback(caf::event_based_actor* self);
  void deliver_one(item& x);
  void deliver_to_actor(caf::event_based_actor* self, item& x);
  void finish_one_in_flight(caf::event_based_actor* self);
};

} // namespace actorbus::bus::detail
