#pragma once

// A pool of worker actors running callables, with the semantics of Python's
// ThreadPoolExecutor.
//
//   runtime::runtime rt;
//   worker_pool pool{rt, {.workers = 4}};
//   task_future<int> f = pool.submit([](int x) { return x * x; }, 7);
//   caf::expected<int> r = f.get(std::chrono::seconds(1));     // 49
//   auto squares = pool.map([](int x) { return x * x; }, inputs);
//   for (auto& r : squares) ...     // input order; an error at its element
//   completion_queue<int> done = as_completed(futures);  // finish order
//
// Workers are detached CAF actors (one thread each, so blocking tasks never
// stall the CAF scheduler) that pull tasks from one shared queue: an idle
// worker takes the next task, so a slow task never holds up work queued
// behind it, and no request/reply round trip is paid per task.
//
// Crashes: an exception escaping a task ends the worker actor that ran it
// (as an uncaught exception ends any actor). The pool spawns a replacement,
// and the task is retried (`crash_policy::retry`, at most
// `max_task_attempts` runs) or its future fails (`crash_policy::fail`) with
// `caf::sec::runtime_error` carrying the exception's message: never silently
// lost. Tasks may also return `caf::expected<T>`: an error is the task's
// result, not a crash.
//
// Capacity, overload, shutdown, counters and lifetimes are those of every
// pool (`basic_pool.hpp`); with a bounded queue, a blocking `submit` waits on
// the calling thread.
//
// Thread-safety: every member function may be called from any thread,
// except that blocking calls (`get`, `wait`, `shutdown`, a blocking `submit`)
// must not run inside an actor's handler; inside actors, use
// `task_future::respond(self)` or `task_future::then`. The destructor shuts
// the pool down: it waits (up to `shutdown_timeout`) for queued tasks.

#include "actorbus/actors/basic_pool.hpp"
#include "actorbus/runtime/fwd.hpp"

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/response_promise.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace actorbus::actors {

/// Settings only a `worker_pool` has: how its workers take tasks.
struct worker_tuning {
  /// Most tasks a worker takes from the queue at once (at least 1). 1 (the
  /// default) guarantees that a slow task holds up nothing queued behind it;
  /// more saves lock traffic for tiny tasks, but a worker then keeps up to
  /// `batch - 1` tasks waiting behind its current one.
  std::size_t batch = 1;
  /// How long a worker that found the queue empty stays awake polling for
  /// more work before it parks (0: park at once; not negative). Saves a
  /// wake-up per task under a steady stream, at the cost of a little CPU.
  caf::timespan idle_spin = std::chrono::microseconds(50);
};

namespace detail {

template <class T>
struct future_state;

template <class T>
struct completion_state;

class task_base;

} // namespace detail

/// The eventual result of a task: a value or an error. Every pool's `submit`
/// returns one. Copyable; all copies see the same result.
template <class T>
class task_future {
public:
  task_future() = default;

  /// A future of the result `st` will hold (for pools).
  explicit task_future(std::shared_ptr<detail::future_state<T>> st)
      : st_(std::move(st)) {}

  /// True once the task has a result.
  [[nodiscard]] bool ready() const;

  /// Waits up to `timeout` for the result; `caf::sec::request_timeout` when
  /// the task is still pending then. Never call inside an actor handler.
  caf::expected<T> get(caf::timespan timeout) const;

  /// Waits up to `timeout`; true when the result is there.
  bool wait(caf::timespan timeout) const;

  /// Calls `fn(const caf::expected<T>&)` once the result is there: at once
  /// when it already is, else on the thread that completes the task. One
  /// callback per future; a later call replaces an earlier, pending one.
  template <class F>
  void then(F fn) const;

  /// Inside a handler of actor `self`: answers the request being handled
  /// with this task's result once it is there. Return the value from the
  /// handler (it is a `caf::response_promise`). The reply travels as an
  /// anonymous response, so it is safe to deliver from a worker thread.
  template <class Self>
  caf::response_promise respond(Self* self) const;

private:
  std::shared_ptr<detail::future_state<T>> st_;
};

/// Hands out results of many futures in the order they complete; made by
/// `as_completed`.
template <class T>
class completion_queue {
public:
  /// Waits up to `timeout` for the next completed task; yields its index in
  /// the input and its result, or nothing when none completed in time or
  /// every task was already handed out.
  std::optional<std::pair<std::size_t, caf::expected<T>>>
  next(caf::timespan timeout);

  /// Tasks not handed out yet.
  [[nodiscard]] std::size_t remaining() const;

  explicit completion_queue(std::shared_ptr<detail::completion_state<T>> st)
      : st_(std::move(st)) {}

private:
  std::shared_ptr<detail::completion_state<T>> st_;
  std::size_t handed_ = 0;
};

/// Python's `as_completed`: the futures' results in completion order.
template <class T>
completion_queue<T> as_completed(const std::vector<task_future<T>>& fs);

/// A pool of worker actors running callables. Not copyable, not movable.
class worker_pool : public basic_pool {
public:
  /// Starts `cfg.workers` workers in `sys`. Bad configuration is raised as
  /// `std::invalid_argument` ("worker_pool.workers: must be at least 1");
  /// use `make` for an error value instead.
  worker_pool(caf::actor_system& sys, pool_config cfg = {},
              worker_tuning tuning = {});

  /// As above, in the actor system of `rt`, which tracks the workers: its
  /// shutdown stops them.
  worker_pool(runtime::runtime& rt, pool_config cfg = {},
              worker_tuning tuning = {});

  /// Checks `cfg` and `tuning` first: `caf::sec::invalid_argument` naming
  /// the field when they are bad.
  static caf::expected<std::unique_ptr<worker_pool>>
  make(caf::actor_system& sys, pool_config cfg, worker_tuning tuning = {});

  /// As above, tracked by `rt`.
  static caf::expected<std::unique_ptr<worker_pool>>
  make(runtime::runtime& rt, pool_config cfg, worker_tuning tuning = {});

  /// Shuts down with `wait` and the configured `shutdown_timeout`.
  ~worker_pool() override;

  /// Queues `fn(args...)`; the future holds its result (`caf::unit` for
  /// void; the error for a callable returning a failed `caf::expected`).
  /// After shutdown, or when the queue is full (see `basic_pool.hpp`), the
  /// future holds an error and `fn` never runs.
  template <class F, class... Args>
  auto submit(F fn, Args... args);

  /// Queues `fn(x)` for every `x` of `xs` (in one batch) and returns the
  /// futures in input order; a failed element holds its error.
  template <class F, class Range>
  auto map(F fn, const Range& xs);

private:
  void push_one(std::shared_ptr<detail::task_base> task);
  void push_many(std::vector<std::shared_ptr<detail::task_base>>& tasks);
};

} // namespace actorbus::actors

#include "actorbus/actors/detail/worker_pool.hpp"
