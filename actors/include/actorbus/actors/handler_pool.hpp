#pragma once

// A pool of user actors (message handlers) behind one address.
//
//   handler_pool pool{sys, [settings](caf::event_based_actor* self) {
//     return resize_image_worker(self, settings);     // a caf::behavior
//   }, {.workers = 4, .on_crash = crash_policy::retry}};
//   // From an actor:        self->request(pool.handle(), 5s, job).then(...)
//   // From a plain thread:  caf::expected<image> r = pool.call<image>(5s,
//   job);
//
// Every message sent to `handle()` is one job. A job goes to an idle worker
// as a request; the worker's reply (a value or an error) goes back to the
// job's sender. Each worker holds at most one job at a time, and a worker
// takes the next job only when it has answered the last one, so a slow job
// never holds up the jobs queued behind it: they go to the other workers.
// Messages sent with `send` (not `request`) are jobs whose replies are
// dropped.
//
// Workers are event-based actors running the behavior the factory returns,
// each on its own thread (`worker_threads::own`, the default: handlers may
// block) or on CAF's scheduler (`worker_threads::shared`).
//
// Crashes: a worker that exits while it holds a job (an exception escaping
// its handler, a kill, a normal exit) is replaced by a new one from the
// factory, and its job is retried on another worker (`crash_policy::retry`,
// at most `max_task_attempts` runs) or answered with the exit reason
// (`crash_policy::fail`): never silently lost. A worker that exits while
// idle is replaced too. The pool installs the workers' exception handler:
// do not replace it in the factory.
//
// Capacity: with `queue_capacity` > 0, a job arriving while that many jobs
// wait is answered at once with `caf::sec::unavailable_or_would_block`
// (`overflow_policy::reject`), or waits for room up to `block_timeout` and
// is then answered with `caf::sec::request_timeout`
// (`overflow_policy::block`). The fields `batch` and `idle_spin` of
// `pool_config` do not apply here.
//
// Thread-safety: every member function may be called from any thread;
// `call`, `wait_for_workers` and a waiting `shutdown` block and must not run
// inside an actor's handler (send to `handle()` there). The destructor shuts
// the pool down, waiting up to `shutdown_timeout` for queued jobs.

#include "actorbus/actors/caller_pool.hpp"
#include "actorbus/actors/worker_pool.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/behavior.hpp>
#include <caf/error.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <utility>

namespace actorbus::actors {

/// Makes the behavior of one worker of a handler pool; called again for
/// every replacement.
using worker_factory = std::function<caf::behavior(caf::event_based_actor*)>;

/// Where the workers of a handler pool run.
enum class worker_threads {
  /// A thread per worker: handlers may block.
  own,
  /// CAF's scheduler threads: handlers must not block.
  shared,
};

namespace detail {

class handler_pool_core;

} // namespace detail

/// A pool of worker actors behind one address. Not copyable, not movable.
class handler_pool {
public:
  /// Starts `cfg.workers` workers made by `make_worker`. An invalid
  /// configuration (no factory, no workers, no attempts) is raised as
  /// `std::invalid_argument`; use `make` for an error value instead.
  handler_pool(caf::actor_system& sys, worker_factory make_worker,
               pool_config cfg = {},
               worker_threads threads = worker_threads::own);

  /// Checks its arguments first: `caf::sec::invalid_argument` when invalid.
  static caf::expected<std::unique_ptr<handler_pool>>
  make(caf::actor_system& sys, worker_factory make_worker, pool_config cfg,
       worker_threads threads = worker_threads::own);

  /// Shuts down with `wait` and the configured `shutdown_timeout`.
  ~handler_pool();

  handler_pool(const handler_pool&) = delete;
  handler_pool& operator=(const handler_pool&) = delete;

  /// The pool's address: send or request jobs here. Valid until the pool
  /// is destroyed; after shutdown, jobs are answered with
  /// `caf::sec::request_receiver_down`.
  [[nodiscard]] caf::actor handle() const;

  /// Sends `xs...` as one job and waits up to `timeout` for the reply of
  /// type `R` (void: an empty reply). Never call inside an actor handler.
  template <class R, class... Ts>
  caf::expected<R> call(caf::timespan timeout, Ts&&... xs) {
    auto dest = handle();
    return callers_.with([&](runtime::caller& c) {
      return c.call<R>(dest, timeout, std::forward<Ts>(xs)...);
    });
  }

  /// Changes the number of workers; surplus workers stop once they have
  /// answered their current job. `caf::sec::invalid_argument` for 0.
  caf::error resize(std::size_t workers);

  /// Waits up to `timeout` until exactly `n` workers are alive.
  bool wait_for_workers(std::size_t n, caf::timespan timeout);

  /// Stops taking jobs, then answers or cancels the queued ones and stops
  /// the workers. With `wait`, returns `caf::sec::request_timeout` when the
  /// jobs did not finish within `timeout` (those still queued fail then).
  /// Idempotent.
  caf::error shutdown(shutdown_options opts = {});

  /// Current counters (`completed` counts answered jobs).
  pool_stats stats() const;

  /// Kills one worker from outside (for fault drills); its job, if any, is
  /// retried or failed by policy. False when no worker is alive.
  bool kill_one_worker();

private:
  std::shared_ptr<detail::handler_pool_core> core_;
  caller_pool callers_;
};

} // namespace actorbus::actors
