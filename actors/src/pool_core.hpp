#pragma once

// The core that `worker_pool` and `handler_pool` share: settings checks, the
// bounded queue and its overload policy, crash policy, resize, shutdown,
// counters and runtime tracking. A pool adds how its workers take items
// (pull for `worker_pool`, dispatch for `handler_pool`) through the hooks.

#include "actorbus/actors/basic_pool.hpp"
#include "actorbus/actors/detail/pool_item.hpp"
#include "actorbus/runtime/fwd.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace actorbus::actors::detail {

/// Checks the settings every pool shares. Returns what is wrong as
/// "<component>.<field>: <reason>", or nothing.
std::optional<std::string> check_config(std::string_view component,
                                        const pool_config& cfg);

/// `caf::sec::invalid_argument` with `context`.
caf::error bad_config(std::string context);

/// `std::make_unique<Pool>(xs...)`, or the bad configuration `why` as
/// `caf::sec::invalid_argument`.
template <class Pool, class... Ts>
caf::expected<std::unique_ptr<Pool>>
make_checked(std::optional<std::string> why, Ts&&... xs) {
  if (why)
    return bad_config(std::move(*why));
  return std::make_unique<Pool>(std::forward<Ts>(xs)...);
}

/// Fails every item of `xs` with `err` and clears `xs`.
void fail_all(std::vector<item_ptr>& xs, const caf::error& err);

class pool_core : public std::enable_shared_from_this<pool_core> {
public:
  /// `rt` may be null; when given, it tracks every spawned worker.
  pool_core(const char* component, caf::actor_system& sys, runtime::runtime* rt,
            const pool_config& cfg);

  pool_core(const pool_core&) = delete;
  pool_core& operator=(const pool_core&) = delete;

  virtual ~pool_core();

  caf::error resize(std::size_t n);

  bool wait_for_workers(std::size_t n, caf::timespan timeout);

  caf::error shutdown(const shutdown_options& opts);

  /// Shutdown with `wait` and the configured `shutdown_timeout`.
  caf::error shutdown_default();

  pool_stats stats() const;

  bool kill_one_worker();

  /// Closes the pool as `shutdown({.wait = false})` does; when the pool
  /// belongs to a runtime, what is still queued at its shutdown deadline is
  /// cancelled. Called when a worker receives an exit message it did not get
  /// from its pool (the runtime's shutdown).
  void close_by_exit();

protected:
  enum class admission {
    /// In the queue.
    queued,
    /// The queue is full and the policy is `block`: wait, then try again.
    wait,
    /// Refused: closed, or the queue is full and the policy says so.
    refused,
  };

  /// Queues `x` when there is room, else applies the overload policy. On
  /// `refused`, `x` still holds the item and `err` says why; under
  /// `drop_oldest`, `evicted` receives the item dropped for `x`. Under the
  /// lock.
  admission admit_locked(item_ptr& x, caf::error& err, item_ptr& evicted);

  /// Whether the pool is open and its queue has room for one more item.
  bool open_with_room_locked() const {
    return !closed_ &&
           (cfg_.queue_capacity == 0 || queue_.size() < cfg_.queue_capacity);
  }

  /// How many of `n` new items fit into the queue now (0 once closed).
  std::size_t room_locked(std::size_t n) const {
    if (closed_)
      return 0;
    if (cfg_.queue_capacity == 0)
      return n;
    auto room = queue_.size() < cfg_.queue_capacity
                    ? cfg_.queue_capacity - queue_.size()
                    : 0;
    return room < n ? room : n;
  }

  /// Whether the queue has room for one more item (or the pool closed).
  bool room_or_closed_locked() const;

  /// The error of an item that found no room in time.
  caf::error no_room_in_time() const;

  /// The error of an item offered to a closed pool.
  caf::error closed_error() const;

  /// The item `x` of a worker that died: true when it goes back to the
  /// front of the queue (crash policy `retry` with runs left), false when
  /// it fails. Under the lock.
  bool requeue_locked(item_ptr& x);

  /// The error of an item whose worker died of `reason`.
  caf::error crash_error(const std::string& reason) const;

  /// Workers to spawn so that `active` workers and those being started
  /// reach the target, counted as replacements when `replacing`. Zero once
  /// the pool closed. The caller spawns them and calls `started_locked` for
  /// each. Under the lock.
  std::size_t missing_locked(std::size_t active, bool replacing);

  /// One worker promised by `missing_locked` has started (or was given up).
  /// Under the lock.
  void started_locked();

  /// Takes the queued items that can no longer run: the pool closed and no
  /// worker is left, or its runtime's shutdown deadline passed. Under the
  /// lock.
  std::vector<item_ptr> stranded_locked();

  /// Workers alive. Under the lock.
  std::size_t workers_locked() const {
    return census_locked().first;
  }

  /// Has the runtime (if any) track `w`.
  void track(const caf::actor& w);

  // -- hooks of a pool ------------------------------------------------------

  /// How many workers are alive, and one of them (for a drill) or none.
  /// Under the lock.
  virtual std::pair<std::size_t, caf::actor> census_locked() const = 0;

  /// After the pool closed or its target changed (without the lock): spawn
  /// missing workers, stop surplus or idle ones once closed, hand out work.
  virtual void rebalance() = 0;

  const char* component_;
  caf::actor_system& sys_;
  runtime::runtime* rt_;
  pool_config cfg_;

  mutable std::mutex mtx_;
  /// Signalled when room appears in a bounded queue or the pool closes.
  std::condition_variable room_cv_;
  /// Signalled when workers come and go or the queue drains.
  std::condition_variable state_cv_;
  std::deque<item_ptr> queue_;
  std::size_t target_;
  /// Workers promised by `missing_locked` and not started yet.
  std::size_t starting_ = 0;
  bool closed_ = false;
  /// Set when the runtime's shutdown closed the pool: queued items still
  /// there at this time are cancelled.
  std::optional<std::chrono::steady_clock::time_point> cancel_at_;
  std::atomic<std::size_t> completed_{0};
  std::size_t crashes_ = 0;
  std::size_t replaced_ = 0;
  std::size_t retried_ = 0;
  std::size_t dropped_ = 0;
};

} // namespace actorbus::actors::detail
