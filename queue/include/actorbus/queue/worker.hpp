#pragma once

// The consumer side of the task queue: a supervised pool of handler actors.
//
// A worker reads batches of tasks from the queue's streams with one
// connection, hands each to one of `queue_config::concurrency` detached
// handler actors (each on its own thread, so a CPU-bound handler blocks no
// one), and acknowledges finished tasks in one pipelined script per batch,
// together with their results, retries, dead letters and effects. A second
// thread renews the leases of in-flight tasks, so a long handler is never
// reclaimed while its process lives. The handler actors run under an
// `actors::supervisor` (one_for_one, with the restart intensity and backoff
// of `queue_config`): one that dies is restarted; the task it was running is
// retried (an attempt spent), those it had not started go to its successor
// at the same attempt. Past the intensity the worker gives up and hands its
// tasks back (those it never started at the same attempt). When Redis goes
// away the worker reconnects with exponential backoff and keeps what it has not
// acknowledged.
//
// Register every handler before `start()`. `start`, `stop` and `stats` are
// thread-safe. Handlers run concurrently with each other.

#include "actorbus/queue/client.hpp"
#include "actorbus/queue/codec.hpp"
#include "actorbus/queue/config.hpp"
#include "actorbus/queue/error.hpp"
#include "actorbus/queue/fwd.hpp"
#include "actorbus/runtime/fwd.hpp"

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace actorbus::queue {

/// What a handler knows about its task, and how it declares effects.
class task_context {
public:
  task_context(std::string_view id, uint32_t attempt,
               std::string_view idempotency_key)
      : id_(id)
      , attempt_(attempt)
      , key_(idempotency_key) {
    // nop
  }

  std::string_view id() const noexcept {
    return id_;
  }

  /// 1 for the first attempt.
  uint32_t attempt() const noexcept {
    return attempt_;
  }

  std::string_view idempotency_key() const noexcept {
    return key_;
  }

  /// Adds a Redis command applied atomically with the task's
  /// acknowledgement: either both happen or neither. With an idempotency
  /// key, effects apply at most once for that key. An effect Redis refuses
  /// (a wrong type, an unknown command) ends the task dead with the reason;
  /// the effects before it stay applied (Redis cannot undo them).
  void add_effect(std::vector<std::string> redis_command) {
    effects_.push_back(std::move(redis_command));
  }

  const std::vector<std::vector<std::string>>& effects() const noexcept {
    return effects_;
  }

private:
  std::string_view id_;
  uint32_t attempt_;
  std::string_view key_;
  std::vector<std::vector<std::string>> effects_;
};

/// A handler gets the raw payload and returns the result or an error. An
/// error fails the attempt (so does an exception) and the task is retried
/// after its backoff; an error with code `caf::sec::invalid_argument` or
/// `errc::malformed_payload` is permanent and makes the task a dead task at
/// once.
using task_handler =
    std::function<caf::expected<std::string>(task_context&, std::string_view)>;

namespace detail {

enum class fault_point;

void on_fault_point(worker& w, std::function<void(fault_point)> hook);

} // namespace detail

/// Counters of one worker (monotonic).
struct worker_stats {
  uint64_t succeeded = 0;
  uint64_t retried = 0;
  uint64_t dead_lettered = 0;
  uint64_t reclaimed = 0;
  uint64_t reconnects = 0;
  uint64_t handler_restarts = 0;
  /// The handler supervisor exceeded its restart intensity: this worker
  /// takes no more tasks.
  bool gave_up = false;
};

/// Runs the tasks of a queue: a supervised pool of handler actors fed by one
/// reading thread. Not copyable, not movable.
class worker {
public:
  /// A worker in `rt`'s actor system; nothing runs before `start()`.
  worker(runtime::runtime& rt, queue_config cfg = {});
  ~worker();

  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  /// Registers the handler of task `name` (replaces an earlier one).
  void handle(std::string name, task_handler fn);

  /// Registers a handler taking typed arguments: a payload that does not
  /// decode to `Ts...` makes the task a dead task
  /// (`errc::malformed_payload`).
  template <class... Ts, class F>
  void handle_typed(std::string name, F fn) {
    handle(std::move(name),
           [fn = std::move(fn)](task_context& ctx, std::string_view payload)
               -> caf::expected<std::string> {
             auto args = decode<Ts...>(payload);
             if (!args)
               return std::move(args.error());
             return std::apply(
                 [&](auto&... xs) -> caf::expected<std::string> {
                   return fn(ctx, xs...);
                 },
                 *args);
           });
  }

  /// Connects and starts reading. Fails with `caf::sec::invalid_argument`
  /// for an invalid configuration, with `errc::unreachable` when Redis
  /// cannot be reached within `io_timeout`.
  caf::error start();

  /// Graceful stop: stops reading, lets in-flight tasks finish and
  /// acknowledges them, waiting at most `deadline`. Tasks no handler has
  /// started by then go back to the queue at the same attempt, for any
  /// worker; tasks still running stay unacknowledged and are reclaimed by
  /// other workers after the visibility timeout (an attempt spent).
  /// Idempotent.
  void stop(caf::timespan deadline = std::chrono::seconds(10));

  /// Current counters.
  worker_stats stats() const;

  /// A unique consumer name of this worker in the consumer group.
  const std::string& consumer() const;

  /// The `actors::supervisor` of the handler actors (children
  /// "handler-0" ... "handler-<concurrency - 1>"), to query or monitor;
  /// invalid before `start()`.
  caf::actor handler_supervisor() const;

private:
  friend void detail::on_fault_point(worker&,
                                     std::function<void(detail::fault_point)>);

  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace actorbus::queue
