#pragma once

// A pool of worker processes with `multiprocessing.Pool` semantics: `map`
// (results in input order), `map_unordered` (results as they complete) and
// `submit` (one task, a future). Tasks travel over shared-memory channels,
// one task per message (Python's chunksize=1).
//
// Workers are forked from the pool's process, so the task function is an
// ordinary function of this binary. Each worker is a process child (see
// process.hpp) of an `actors::supervisor` that the pool runs on its own small
// actor system: a worker that dies or exits (kill -9, crash, a task calling
// exit(0), or killed by the pool after `task_timeout`) is restarted by the
// supervisor with its backoff (restart_delay doubling up to
// max_restart_delay) and intensity (`max_restarts` within `restart_period`),
// and its tasks are re-run on a worker (at least once). When the supervisor
// gives up, outstanding and later tasks fail with `errc::peer_dead`.
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
// threads.
//
// Lifetime: destroying the pool waits for the tasks in progress, then its
// supervisor stops the workers (SIGTERM; SIGKILL after a second) and reaps
// them. A pool may live
// in a static object (at namespace scope or function-local): its own actor
// system is created and destroyed on a thread of its own, so destruction at
// exit, after the main thread's thread_locals are gone, is safe.

#include "actorbus/ipc/channel.hpp"
#include "actorbus/ipc/error.hpp"

#include <caf/expected.hpp>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <span>
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
  std::chrono::milliseconds task_timeout{std::chrono::minutes(5)};
  /// Fewest short tasks sent ahead to one worker (each still its own
  /// message, as with chunksize=1), so that a worker never waits for its
  /// next task; at least 1. A worker that dies re-runs all of them
  /// elsewhere.
  size_t prefetch = 4;
  /// Restarts allowed within `restart_period` before the pool gives up.
  size_t max_restarts = 100;
  /// Window of `max_restarts`; zero means the pool's whole life.
  std::chrono::milliseconds restart_period{0};
  /// First delay before restarting a worker; doubles on every restart of a
  /// worker that ran for less than a second.
  std::chrono::milliseconds restart_delay{0};
  std::chrono::milliseconds max_restart_delay{1000};
  /// Tasks whose observed run time exceeds this are not sent ahead.
  std::chrono::microseconds long_task{500};
};

namespace detail {

/// Untyped core: tasks are byte strings, workers run `fn` on them.
class pool_core {
public:
  using worker_fn =
      std::function<void(std::span<const std::byte>, std::vector<std::byte>&)>;
  using done_fn =
      std::function<void(size_t index, caf::expected<std::vector<std::byte>>)>;

  pool_core(worker_fn fn, process_pool_options opts);
  ~pool_core();

  caf::error start();

  /// Runs every task; `done` is called once per task, from pool threads.
  void run(std::vector<std::vector<std::byte>> tasks, done_fn done);

  size_t size() const noexcept;
  size_t restarts() const noexcept;
  std::vector<pid_t> worker_pids() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

template <class T>
std::vector<std::byte> to_bytes(const T& x) {
  std::vector<std::byte> result(sizeof(T));
  std::memcpy(result.data(), &x, sizeof(T));
  return result;
}

template <class T>
caf::expected<T> from_bytes(std::span<const std::byte> bytes) {
  if (bytes.size() != sizeof(T))
    return make_error(errc::corrupt_frame, "result of unexpected size");
  T x;
  std::memcpy(&x, bytes.data(), sizeof(T));
  return x;
}

} // namespace detail

/// Runs `Result fn(Arg)` in worker processes. Arg and Result are trivially
/// copyable (they cross the process boundary as bytes).
template <class Arg, class Result>
class process_pool {
public:
  static_assert(std::is_trivially_copyable_v<Arg> &&
                    std::is_trivially_copyable_v<Result>,
                "process_pool moves trivially copyable values");

  using function_type = Result (*)(Arg);

  /// Forks the workers and waits until they run. Check `start_error()`
  /// before use.
  explicit process_pool(function_type fn, process_pool_options opts = {})
      : core_(
            [fn](std::span<const std::byte> in, std::vector<std::byte>& out) {
              Arg arg;
              std::memcpy(&arg, in.data(), std::min(in.size(), sizeof(Arg)));
              out = detail::to_bytes(fn(arg));
            },
            opts) {
    start_error_ = core_.start();
  }

  /// Why the pool could not start, or none.
  const caf::error& start_error() const noexcept {
    return start_error_;
  }

  /// Applies fn to every argument; results in input order. Fails with the
  /// first error if any task failed after its retries.
  caf::expected<std::vector<Result>> map(const std::vector<Arg>& args) {
    std::vector<Result> results(args.size());
    caf::error first;
    std::mutex mx;
    core_.run(encode(args), [&](size_t i, auto res) {
      std::lock_guard guard{mx};
      if (!res) {
        if (!first)
          first = std::move(res.error());
        return;
      }
      if (auto x = detail::from_bytes<Result>(*res))
        results[i] = *x;
      else if (!first)
        first = std::move(x.error());
    });
    if (first)
      return first;
    return results;
  }

  /// Applies fn to every argument; (index, result) pairs in completion
  /// order.
  caf::expected<std::vector<std::pair<size_t, Result>>>
  map_unordered(const std::vector<Arg>& args) {
    std::vector<std::pair<size_t, Result>> results;
    results.reserve(args.size());
    caf::error first;
    std::mutex mx;
    core_.run(encode(args), [&](size_t i, auto res) {
      std::lock_guard guard{mx};
      if (!res) {
        if (!first)
          first = std::move(res.error());
        return;
      }
      if (auto x = detail::from_bytes<Result>(*res))
        results.emplace_back(i, *x);
      else if (!first)
        first = std::move(x.error());
    });
    if (first)
      return first;
    return results;
  }

  /// Runs one task in the background.
  std::future<caf::expected<Result>> submit(Arg arg) {
    return std::async(std::launch::async, [this, arg] {
      auto res = map({arg});
      if (!res)
        return caf::expected<Result>{std::move(res.error())};
      return caf::expected<Result>{res->front()};
    });
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
  static std::vector<std::vector<std::byte>>
  encode(const std::vector<Arg>& args) {
    std::vector<std::vector<std::byte>> result;
    result.reserve(args.size());
    for (auto& x : args)
      result.push_back(detail::to_bytes(x));
    return result;
  }

  detail::pool_core core_;
  caf::error start_error_;
};

} // namespace actorbus::ipc
