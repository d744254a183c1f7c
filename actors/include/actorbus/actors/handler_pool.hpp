#pragma once

// A pool of user actors (message handlers) behind one address.
//
//   handler_pool pool{rt, [settings](caf::event_based_actor* self) {
//     return resize_image_worker(self, settings);     // a caf::behavior
//   }, {.workers = 4, .on_crash = crash_policy::retry}};
//   // From an actor:
//   self->request(pool.handle(), 5s, job).then(...);
//   // From a plain thread:
//   caf::expected<image> r = pool.call<image>(5s, job);
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
// idle is replaced too. The pool installs the workers' exception and exit
// handlers: do not replace them in the factory.
//
// Capacity, overload, shutdown, counters and lifetimes are those of every
// pool (`basic_pool.hpp`). A job that meets a full queue under
// `overload_policy::block` waits in the pool (not on the sender's thread)
// and is answered with `caf::sec::request_timeout` when no room came within
// `block_timeout`. Every other error reaches the job's sender as its reply.
//
// Thread-safety: every member function may be called from any thread;
// `call`, `wait_for_workers` and a waiting `shutdown` block and must not run
// inside an actor's handler (send to `handle()` there). The destructor shuts
// the pool down, waiting up to `shutdown_timeout` for queued jobs.

#include "actorbus/actors/basic_pool.hpp"
#include "actorbus/actors/caller_pool.hpp"
#include "actorbus/runtime/fwd.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

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

/// A pool of worker actors behind one address, answering every message as
/// a job. Not copyable, not movable.
class handler_pool : public basic_pool {
public:
  /// Starts `cfg.workers` workers made by `make_worker` in `sys`. Bad
  /// configuration is raised as `std::invalid_argument`
  /// ("handler_pool.make_worker: must not be empty"); use `make` for an
  /// error value instead.
  handler_pool(caf::actor_system& sys, worker_factory make_worker,
               pool_config cfg = {},
               worker_threads threads = worker_threads::own);

  /// As above, in the actor system of `rt`, which tracks the workers: its
  /// shutdown stops them.
  handler_pool(runtime::runtime& rt, worker_factory make_worker,
               pool_config cfg = {},
               worker_threads threads = worker_threads::own);

  /// Checks its arguments first: `caf::sec::invalid_argument` naming the
  /// field when they are bad.
  static caf::expected<std::unique_ptr<handler_pool>>
  make(caf::actor_system& sys, worker_factory make_worker, pool_config cfg,
       worker_threads threads = worker_threads::own);

  /// As above, tracked by `rt`.
  static caf::expected<std::unique_ptr<handler_pool>>
  make(runtime::runtime& rt, worker_factory make_worker, pool_config cfg,
       worker_threads threads = worker_threads::own);

  /// Shuts down with `wait` and the configured `shutdown_timeout`; later
  /// jobs sent to a copy of `handle()` are answered with
  /// `caf::sec::request_receiver_down`.
  ~handler_pool() override;

  /// The pool's address: send or request jobs here. After shutdown, jobs
  /// are answered with `caf::sec::request_receiver_down`.
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

private:
  handler_pool(caf::actor_system& sys, runtime::runtime* rt,
               worker_factory make_worker, const pool_config& cfg,
               worker_threads threads);

  caller_pool callers_;
};

} // namespace actorbus::actors
