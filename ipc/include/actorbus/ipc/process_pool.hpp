#pragma once

// A pool of worker processes with `multiprocessing.Pool` semantics: `map`
// (results in input order), `map_unordered` (results as they complete) and
// `submit` (one task, an `actors::task_future`, as `worker_pool::submit`
// returns). Tasks travel over shared-memory channels, one task per message
// (Python's chunksize=1).
//
//   int64_t square(const int64_t& x) { return x * x; }
//   process_pool<int64_t, int64_t> pool{square, {.workers = 4}};
//   auto all = pool.map({1, 2, 3});                 // expected<vector>
//   auto one = pool.submit(7).get(5s);              // expected<int64_t>
//
// Types: `Arg` and `Result` are any type CAF can serialize (integers,
// strings, standard containers, or a struct with an `inspect` overload);
// they cross the process boundary in CAF's binary format, trivially
// copyable ones as their bytes. The pool needs no type registration: both
// ends are this binary.
//
// Workers are forked from the pool's process, so the task function is any
// callable of this binary (its copy in the worker runs the tasks). Each
// worker is a process child (see process.hpp) of an `actors::supervisor`
// that the pool runs on its own small actor system: a worker that dies or
// exits (kill -9, crash, a task calling exit(0), or killed by the pool after
// `task_timeout`) is restarted by the supervisor with `restart_backoff` and
// intensity (`max_restarts` within `restart_period`), and the tasks it held
// are re-run on a worker (at least once; the task it was running at most
// `max_task_attempts` times in all, when that is set). When the supervisor
// gives up, outstanding and later tasks fail with `errc::peer_dead`. A task
// that throws fails with `caf::sec::runtime_error` carrying the exception's
// `what()`; its worker goes on.
//
// Sizes: an argument larger than the channel's `max_frame` fails its task
// with `errc::frame_too_large` at once, before any worker sees it; a result
// larger than `max_frame` less 16 bytes fails its task the same way (both
// errors name the size and the limit), and its worker goes on with the next
// task.
//
// Dispatch: the pool's threads sleep on futexes while workers compute. Short
// tasks are sent ahead, about `long_task` worth of work per worker (at least
// `prefetch`, at most 256 tasks, and no more argument bytes than the
// channel's `capacity` holds), so that a worker never waits for its next
// one; tasks that take longer than `long_task` (as timed by the worker) go
// out one at a time, so a worker that finishes early takes the remaining
// ones instead of idling while another works through its backlog.
//
// Thread-safety: map, map_unordered and submit may be called from several
// threads; `submit` never blocks.
//
// Lifetime: destroying the pool waits for the tasks in progress (submitted
// ones included), then its supervisor stops the workers (SIGTERM; SIGKILL
// after a second) and reaps them. A pool may live in a static object (at
// namespace scope or function-local): its own actor system is created and
// destroyed on a thread of its own, so destruction at exit, after the main
// thread's thread_locals are gone, is safe.

#include "actorbus/actors/worker_pool.hpp"
#include "actorbus/ipc/channel.hpp"
#include "actorbus/ipc/error.hpp"
#include "actorbus/runtime/backoff.hpp"

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstddef>
#include <sys/types.h>
#include <type_traits>
#include <utility>
#include <vector>

namespace actorbus::ipc {

/// Sizes and supervision policy of a process pool.
struct process_pool_options {
  /// Worker processes; 0 means one per core.
  size_t workers = 0;
  /// Channel settings per worker. `max_frame` bounds the size of arguments
  /// and of results (less 16 bytes); it must be at least 24 bytes.
  channel_options channel;
  /// A task running longer than this fails with `errc::timeout` (its worker
  /// is killed and replaced).
  caf::timespan task_timeout = std::chrono::minutes(5);
  /// Fewest short tasks sent ahead to one worker (each still its own
  /// message, as with chunksize=1), so that a worker never waits for its
  /// next task; at least 1. A worker that dies re-runs all of them
  /// elsewhere.
  size_t prefetch = 4;
  /// Restarts allowed within `restart_period` before the pool gives up.
  size_t max_restarts = 100;
  /// Window of `max_restarts`; zero means the pool's whole life.
  caf::timespan restart_period = caf::timespan{0};
  /// Pause before restarting a worker; a worker that ran for
  /// `reset_after` starts the count of its restarts again.
  runtime::backoff restart_backoff{.min = caf::timespan{0},
                                   .max = std::chrono::seconds(1),
                                   .reset_after = std::chrono::seconds(1)};
  /// Runs of one task whose worker died while running it: after this many
  /// the task fails with `errc::task_crashed` instead of running again.
  /// 0: no limit (the pool's `max_restarts` still bounds it).
  size_t max_task_attempts = 0;
  /// Tasks whose observed run time exceeds this are not sent ahead.
  caf::timespan long_task = std::chrono::microseconds(500);
};

} // namespace actorbus::ipc

#include "actorbus/ipc/detail/process_pool.hpp"

namespace actorbus::ipc {

/// Runs `Result fn(const Arg&)` in worker processes. Not copyable, not
/// movable.
template <class Arg, class Result>
class process_pool {
public:
  /// Forks the workers and waits (bounded) until they run; `fn` is any
  /// callable taking an `Arg` and returning a `Result`. Check
  /// `start_error()` before use.
  template <class F>
  explicit process_pool(F fn, process_pool_options opts = {})
      : core_(detail::make_worker_fn<Arg, Result>(std::move(fn)), opts) {
    start_error_ = core_.start();
  }

  process_pool(const process_pool&) = delete;
  process_pool& operator=(const process_pool&) = delete;

  /// Why the pool could not start, or none.
  const caf::error& start_error() const noexcept {
    return start_error_;
  }

  /// Applies fn to every argument; results in input order. Fails with the
  /// first error if any task failed after its retries.
  caf::expected<std::vector<Result>> map(const std::vector<Arg>& args) {
    std::vector<Result> results(args.size());
    auto err =
        run(args, [&](size_t i, Result&& x) { results[i] = std::move(x); });
    if (err)
      return err;
    return results;
  }

  /// Applies fn to every argument; (index, result) pairs in completion
  /// order.
  caf::expected<std::vector<std::pair<size_t, Result>>>
  map_unordered(const std::vector<Arg>& args) {
    std::vector<std::pair<size_t, Result>> results;
    results.reserve(args.size());
    auto err = run(args, [&](size_t i, Result&& x) {
      results.emplace_back(i, std::move(x));
    });
    if (err)
      return err;
    return results;
  }

  /// Sends one task to the workers and returns at once; the future holds
  /// its result (`get(timeout)`, `then`, `respond`).
  actors::task_future<Result> submit(Arg arg) {
    auto st = std::make_shared<actors::detail::future_state<Result>>();
    auto bytes = detail::to_bytes(arg);
    if (!bytes) {
      st->set(std::move(bytes.error()));
      return actors::task_future<Result>{std::move(st)};
    }
    core_.submit(std::move(*bytes),
                 [st](caf::expected<std::vector<std::byte>> res) {
                   if (!res)
                     st->set(std::move(res.error()));
                   else
                     st->set(detail::from_bytes<Result>(*res));
                 });
    return actors::task_future<Result>{std::move(st)};
  }

  /// Number of worker processes.
  size_t size() const noexcept {
    return core_.size();
  }

  /// Workers replaced so far.
  size_t restarts() const noexcept {
    return core_.restarts();
  }

  /// Current worker pids (for monitoring, or for fault tests).
  std::vector<pid_t> worker_pids() const {
    return core_.worker_pids();
  }

private:
  // Runs every task, calling `take(i, result)` (serialized) for each that
  // succeeded; returns the first error.
  template <class Take>
  caf::error run(const std::vector<Arg>& args, Take take) {
    std::vector<std::vector<std::byte>> tasks;
    tasks.reserve(args.size());
    for (auto& x : args) {
      auto bytes = detail::to_bytes(x);
      if (!bytes)
        return std::move(bytes.error());
      tasks.push_back(std::move(*bytes));
    }
    caf::error first;
    std::mutex mx;
    core_.run(std::move(tasks), [&](size_t i, auto res) {
      auto x = res ? detail::from_bytes<Result>(*res)
                   : caf::expected<Result>{std::move(res.error())};
      std::lock_guard guard{mx};
      if (x)
        take(i, std::move(*x));
      else if (!first)
        first = std::move(x.error());
    });
    return first;
  }

  detail::pool_core core_;
  caf::error start_error_;
};

} // namespace actorbus::ipc
