#pragma once

// What every pool of actorbus shares: its settings (`pool_config`), its
// counters (`pool_stats`), how it shuts down (`shutdown_options`) and its
// controls (`basic_pool`: resize, shutdown, stats, fault drills).
//
// `worker_pool` (callables) and `handler_pool` (message handlers) derive from
// `basic_pool` and run on one pool core, so a setting, a counter or a
// shutdown means the same in both.
//
// A bounded queue (`queue_capacity` > 0) treats a new item by
// `runtime::overload_policy`:
//  - `block`: the producer waits for room, at most `block_timeout`; then the
//    item fails with `caf::sec::request_timeout`;
//  - `fail`: the item fails at once with
//  `caf::sec::unavailable_or_would_block`;
//  - `drop_newest`: the new item is dropped and counted
//  (`pool_stats::dropped`);
//    its result is `caf::sec::unavailable_or_would_block`;
//  - `drop_oldest`: the oldest queued item is dropped and counted to make room;
//    its result is `caf::sec::unavailable_or_would_block`.
// No item is lost silently: each gets a result or an error.
//
// Lifetimes: a pool made with a `runtime::runtime` has the runtime track the
// actors it spawns. The runtime's shutdown then closes the pool (as
// `shutdown({.wait = false})` does: queued work still runs until the
// runtime's deadline) and its workers stop, so a pool that outlives its scope
// cannot make the runtime abandon its actor system.

#include "actorbus/runtime/overload.hpp"

#include <caf/error.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstddef>
#include <memory>

namespace actorbus::actors {

/// What happens to an item whose worker crashed while it held the item.
enum class crash_policy {
  /// Run it again on another worker, up to `max_task_attempts` runs.
  retry,
  /// Fail it with the crash's error.
  fail,
};

/// Settings every pool honours.
struct pool_config {
  /// Workers at start (at least 1).
  std::size_t workers = 4;
  /// Most items waiting for a worker; 0: unbounded.
  std::size_t queue_capacity = 0;
  /// What a new item does when `queue_capacity` items wait already.
  runtime::overload_policy on_full = runtime::overload_policy::block;
  /// Longest wait for room in the queue under `overload_policy::block`.
  caf::timespan block_timeout = std::chrono::seconds(30);
  /// What happens to the item of a worker that crashed.
  crash_policy on_crash = crash_policy::fail;
  /// Runs of one item under `crash_policy::retry`, the first included (at
  /// least 1).
  std::size_t max_task_attempts = 3;
  /// Longest wait of the destructor for the queued items.
  caf::timespan shutdown_timeout = std::chrono::seconds(30);
};

/// A snapshot of a pool's counters.
struct pool_stats {
  std::size_t workers = 0;   ///< worker actors alive now
  std::size_t target = 0;    ///< workers the pool keeps
  std::size_t queued = 0;    ///< items waiting for a worker
  std::size_t completed = 0; ///< items that produced a value or an error
  std::size_t crashes = 0;   ///< workers that died unasked (crash, kill)
  std::size_t replaced = 0;  ///< workers spawned to replace a dead one
  std::size_t retried = 0;   ///< item runs repeated after a crash
  std::size_t dropped = 0;   ///< items dropped by `drop_newest`/`drop_oldest`
};

/// How `shutdown` treats the items still queued.
struct shutdown_options {
  /// Wait until the workers have stopped (bounded by `timeout`).
  bool wait = true;
  /// Fail queued items with `caf::sec::request_receiver_down` instead of
  /// running them; also after an earlier shutdown that left them queued.
  bool cancel_pending = false;
  /// Longest wait when `wait` is set.
  caf::timespan timeout = std::chrono::seconds(30);
};

namespace detail {

class pool_core;

} // namespace detail

/// The controls every pool shares: resize, shutdown, counters and fault
/// drills. Thread-safe; the blocking calls (`wait_for_workers`, a waiting
/// `shutdown`) must not run inside an actor's handler.
class basic_pool {
public:
  /// Shuts down with `wait` and the configured `shutdown_timeout`.
  virtual ~basic_pool();

  basic_pool(const basic_pool&) = delete;
  basic_pool& operator=(const basic_pool&) = delete;

  /// Changes the number of workers; surplus workers stop after their
  /// current item. `caf::sec::invalid_argument` for 0,
  /// `caf::sec::request_receiver_down` after shutdown.
  caf::error resize(std::size_t workers);

  /// Waits up to `timeout` until exactly `n` workers are alive.
  bool wait_for_workers(std::size_t n, caf::timespan timeout);

  /// Stops accepting items, then runs or cancels the queued ones and stops
  /// the workers. With `wait`, returns `caf::sec::request_timeout` when the
  /// workers did not stop within `timeout` (the items still queued then
  /// fail). May be called again, e.g. to cancel what a first call left
  /// queued.
  caf::error shutdown(shutdown_options opts = {});

  /// Current counters.
  [[nodiscard]] pool_stats stats() const;

  /// Kills one worker actor from outside (for fault drills); what it held is
  /// retried or failed by `crash_policy`, and the worker is replaced. False
  /// when none is alive.
  bool kill_one_worker();

protected:
  basic_pool() = default;

  std::shared_ptr<detail::pool_core> core_;
};

} // namespace actorbus::actors
