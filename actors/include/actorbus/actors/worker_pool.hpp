#pragma once

// A pool of worker actors with the semantics of Python's ThreadPoolExecutor.
//
//   worker_pool pool{sys, {.workers = 4}};
//   task_future<int> f = pool.submit([](int x) { return x * x; }, 7);
//   caf::expected<int> r = f.get(std::chrono::seconds(1));     // 49
//   auto squares = pool.map([](int x) { return x * x; }, inputs);
//   for (auto& r : squares) ...     // input order; an error at its element
//   completion_queue<int> done = as_completed(futures);  // finish order
//
// Workers are detached CAF actors (one thread each, so blocking tasks never
// stall the CAF scheduler) that pull tasks from one shared queue in batches:
// an idle worker takes the next task, so a slow task never holds up work
// queued behind it, and no request/reply round trip is paid per task. A
// supervising actor monitors every worker.
//
// Crashes: an exception escaping a task ends the worker actor that ran it
// (as an uncaught exception ends any actor). The supervisor spawns a
// replacement, and the task is retried (`crash_policy::retry`, at most
// `max_task_attempts` runs) or its future fails (`crash_policy::fail`) with
// `caf::sec::runtime_error` carrying the exception's message: never silently
// lost. Tasks may also return `caf::expected<T>`: an error is the task's
// result, not a crash.
//
// Capacity: with `queue_capacity` > 0, `submit` on a full queue blocks up to
// `block_timeout` (`overflow_policy::block`) or fails at once
// (`overflow_policy::reject`); either way a task that is not taken yields a
// future holding `caf::sec::request_timeout` /
// `caf::sec::unavailable_or_would_block`.
//
// Thread-safety: every member function may be called from any thread,
// except that blocking calls (`get`, `wait`, `shutdown`, a blocking `submit`)
// must not run inside an actor's handler; inside actors, use
// `task_future::respond(self)` or `task_future::then`. The destructor shuts
// the pool down: it waits (up to `shutdown_timeout`) for queued tasks.

#include <caf/actor.hpp>
#include <caf/actor_control_block.hpp>
#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/message.hpp>
#include <caf/response_promise.hpp>
#include <caf/sec.hpp>
#include <caf/timespan.hpp>
#include <caf/unit.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace actorbus::actors {

/// What `submit` does when the bounded queue is full.
enum class overflow_policy {
  /// Wait for room, up to `pool_config::block_timeout`.
  block,
  /// Fail the task at once.
  reject,
};

/// What happens to a task whose worker crashed while running it.
enum class crash_policy {
  /// Run it again on another worker, up to `max_task_attempts` runs.
  retry,
  /// Fail its future with the crash's error.
  fail,
};

/// Settings of a worker pool.
struct pool_config {
  /// Workers at start (>= 1).
  std::size_t workers = 4;
  /// Most tasks waiting in the queue; 0 = unbounded.
  std::size_t queue_capacity = 0;
  overflow_policy on_full = overflow_policy::block;
  /// Longest wait of a blocking `submit` for room in the queue.
  caf::timespan block_timeout = std::chrono::seconds(30);
  crash_policy on_crash = crash_policy::fail;
  /// Runs of one task under `crash_policy::retry`, the first included.
  std::size_t max_task_attempts = 3;
  /// Most tasks a worker takes from the queue at once. 1 (the default)
  /// guarantees that a slow task holds up nothing queued behind it; more
  /// saves lock traffic for tiny tasks, but a worker then keeps up to
  /// `batch - 1` tasks waiting behind its current one.
  std::size_t batch = 1;
  /// How long a worker that found the queue empty stays awake polling for
  /// more work before it parks (0: park at once). Saves a wake-up per task
  /// under a steady stream, at the cost of a little CPU.
  caf::timespan idle_spin = std::chrono::microseconds(50);
  /// Longest wait of the destructor for the queued tasks.
  caf::timespan shutdown_timeout = std::chrono::seconds(30);
};

/// A snapshot of a pool's counters.
struct pool_stats {
  std::size_t workers = 0;   ///< worker actors alive now
  std::size_t target = 0;    ///< workers the pool keeps
  std::size_t queued = 0;    ///< tasks waiting for a worker
  std::size_t completed = 0; ///< tasks that produced a value or an error
  std::size_t crashes = 0;   ///< workers that died of a task's exception
  std::size_t replaced = 0;  ///< workers spawned to replace a dead one
  std::size_t retried = 0;   ///< task runs repeated after a crash
};

/// How `shutdown` treats the tasks still queued.
struct shutdown_options {
  /// Wait until the workers have stopped (bounded by `timeout`).
  bool wait = true;
  /// Fail queued tasks with `caf::sec::request_receiver_down` instead of
  /// running them.
  bool cancel_pending = false;
  caf::timespan timeout = std::chrono::seconds(30);
};

namespace detail {

/// A mutex and condition variable shared by the futures whose address
/// hashes to it: a future needs them only while a thread waits for it or a
/// callback is pending, so tasks do not each build and destroy a pair.
struct wait_stripe {
  std::mutex mtx;
  std::condition_variable cv;
};

/// The stripe of the future state at `addr`.
wait_stripe& stripe_for(const void* addr) noexcept;

/// Shared state of one task's result.
template <class T>
struct future_state {
  static constexpr uint8_t empty = 0;
  static constexpr uint8_t writing = 1;
  static constexpr uint8_t done = 2;

  std::atomic<uint8_t> phase{empty};
  /// Set (under the stripe's mutex) while a thread waits or a callback is
  /// registered: only then does `set` touch the stripe.
  std::atomic<bool> watched{false};
  std::optional<caf::expected<T>> result;
  /// Guarded by the stripe's mutex.
  std::function<void(const caf::expected<T>&)> on_done;

  [[nodiscard]] bool ready() const noexcept {
    return phase.load(std::memory_order_acquire) == done;
  }

  /// Stores the result; later calls do nothing.
  void set(caf::expected<T> x) {
    auto expected = empty;
    if (!phase.compare_exchange_strong(expected, writing,
                                       std::memory_order_acquire))
      return;
    result.emplace(std::move(x));
    // Sequentially consistent, paired with `watch`: either the watcher sees
    // the result, or this sees the watcher.
    phase.store(done, std::memory_order_seq_cst);
    if (!watched.load(std::memory_order_seq_cst))
      return;
    auto& st = stripe_for(this);
    std::function<void(const caf::expected<T>&)> cb;
    {
      std::lock_guard<std::mutex> guard{st.mtx};
      cb = std::move(on_done);
    }
    st.cv.notify_all();
    if (cb)
      cb(*result);
  }

  /// Waits up to `timeout` for the result.
  bool wait(caf::timespan timeout) {
    if (ready())
      return true;
    auto& st = stripe_for(this);
    std::unique_lock<std::mutex> guard{st.mtx};
    watched.store(true, std::memory_order_seq_cst);
    return st.cv.wait_for(guard, timeout, [this] {
      return phase.load(std::memory_order_seq_cst) == done;
    });
  }

  /// Calls `fn(result)` once there is one: now, or on the setting thread.
  template <class F>
  void then(F fn) {
    if (!ready()) {
      auto& st = stripe_for(this);
      std::unique_lock<std::mutex> guard{st.mtx};
      on_done = std::move(fn);
      watched.store(true, std::memory_order_seq_cst);
      if (phase.load(std::memory_order_seq_cst) != done)
        return;
      // The result landed meanwhile; whoever takes the callback runs it.
      auto cb = std::move(on_done);
      guard.unlock();
      if (cb)
        cb(*result);
      return;
    }
    fn(*result);
  }
};

/// A queued unit of work, type-erased.
class task_base {
public:
  virtual ~task_base() = default;
  /// Runs the task and stores its result; throws when the task throws.
  virtual void run() = 0;
  /// Stores `err` as the task's result.
  virtual void fail(caf::error err) = 0;
  std::size_t runs = 0;
};

using task_ptr = std::shared_ptr<task_base>;

template <class T>
caf::expected<T> to_expected(caf::expected<T>&& x) {
  return std::move(x);
}

template <class R>
struct result_of_task {
  using type = std::conditional_t<std::is_void_v<R>, caf::unit_t, R>;
};

template <class U>
struct result_of_task<caf::expected<U>> {
  using type = U;
};

/// A task and its result's state in one allocation: the queue and the
/// futures share it.
template <class T, class F>
class task_impl final : public task_base, public future_state<T> {
public:
  explicit task_impl(F fn)
      : fn_(std::move(fn)) {}

  void run() override {
    using r = std::invoke_result_t<F&>;
    if constexpr (std::is_void_v<r>) {
      fn_();
      this->set(caf::unit);
    } else {
      this->set(caf::expected<T>{fn_()});
    }
  }

  void fail(caf::error err) override {
    this->set(std::move(err));
  }

private:
  F fn_;
};

/// Makes a task of `fn` and the future of its result.
template <class T, class F>
std::pair<task_ptr, std::shared_ptr<future_state<T>>> make_task(F fn) {
  auto t = std::make_shared<task_impl<T, F>>(std::move(fn));
  std::shared_ptr<future_state<T>> st = t;
  return {std::move(t), std::move(st)};
}

class pool_core;

} // namespace detail

/// The eventual result of a task: a value or an error. Copyable; all copies
/// see the same result.
template <class T>
class task_future {
public:
  task_future() = default;

  explicit task_future(std::shared_ptr<detail::future_state<T>> st)
      : st_(std::move(st)) {}

  /// True once the task has a result.
  [[nodiscard]] bool ready() const {
    return st_ && st_->ready();
  }

  /// Waits up to `timeout` for the result; `caf::sec::request_timeout` when
  /// the task is still pending then. Never call inside an actor handler.
  caf::expected<T> get(caf::timespan timeout) const {
    if (!st_)
      return caf::make_error(caf::sec::invalid_argument, "empty task_future");
    if (!wait(timeout))
      return caf::make_error(caf::sec::request_timeout,
                             "task_future: no result yet");
    return *st_->result;
  }

  /// Waits up to `timeout`; true when the result is there.
  bool wait(caf::timespan timeout) const {
    return st_ && st_->wait(timeout);
  }

  /// Calls `fn(const caf::expected<T>&)` once the result is there: at once
  /// when it already is, else on the thread that completes the task. One
  /// callback per future; a later call replaces an earlier, pending one.
  template <class F>
  void then(F fn) const {
    st_->then(std::move(fn));
  }

  /// Inside a handler of actor `self`: answers the request being handled
  /// with this task's result once it is there. Return the value from the
  /// handler (it is a `caf::response_promise`). The reply travels as an
  /// anonymous response, so it is safe to deliver from a worker thread.
  template <class Self>
  caf::response_promise respond(Self* self) const {
    auto rp = self->make_response_promise();
    // Reply straight to the requester's mailbox with no execution unit, as
    // an anonymous send does: safe from any thread.
    auto dest = rp.stages().empty() ? rp.source() : rp.stages().front();
    auto id = rp.id().response_id();
    then([dest, id](const caf::expected<T>& x) {
      if (!dest)
        return;
      if (x)
        dest->enqueue(nullptr, id, caf::make_message(*x), nullptr);
      else
        dest->enqueue(nullptr, id, caf::make_message(x.error()), nullptr);
    });
    return rp;
  }

private:
  std::shared_ptr<detail::future_state<T>> st_;
};

/// Hands out results of many futures in the order they complete.
template <class T>
class completion_queue {
public:
  /// Waits up to `timeout` for the next completed task; yields its index in
  /// the input and its result, or nothing when none completed in time or
  /// every task was already handed out.
  std::optional<std::pair<std::size_t, caf::expected<T>>>
  next(caf::timespan timeout) {
    std::unique_lock<std::mutex> guard{st_->mtx};
    if (handed_ == st_->total)
      return std::nullopt;
    if (!st_->cv.wait_for(guard, timeout, [&] { return !st_->done.empty(); }))
      return std::nullopt;
    auto x = std::move(st_->done.front());
    st_->done.pop_front();
    ++handed_;
    return x;
  }

  /// Tasks not handed out yet.
  [[nodiscard]] std::size_t remaining() const {
    std::lock_guard<std::mutex> guard{st_->mtx};
    return st_->total - handed_;
  }

  struct state {
    std::mutex mtx;
    std::condition_variable cv;
    std::deque<std::pair<std::size_t, caf::expected<T>>> done;
    std::size_t total = 0;
  };

  explicit completion_queue(std::shared_ptr<state> st)
      : st_(std::move(st)) {}

private:
  std::shared_ptr<state> st_;
  std::size_t handed_ = 0;
};

/// Python's `as_completed`: the futures' results in completion order.
template <class T>
completion_queue<T> as_completed(const std::vector<task_future<T>>& fs) {
  using state = typename completion_queue<T>::state;
  auto st = std::make_shared<state>();
  st->total = fs.size();
  for (std::size_t i = 0; i < fs.size(); ++i)
    fs[i].then([st, i](const caf::expected<T>& x) {
      {
        std::lock_guard<std::mutex> guard{st->mtx};
        st->done.emplace_back(i, x);
      }
      st->cv.notify_all();
    });
  return completion_queue<T>{st};
}

/// A pool of worker actors running callables. Not copyable, not movable.
class worker_pool {
public:
  /// Starts `cfg.workers` workers in `sys`. An invalid configuration
  /// (no workers, batch 0, no attempts) is raised as
  /// `std::invalid_argument`; use `make` for an error value instead.
  worker_pool(caf::actor_system& sys, pool_config cfg = {});

  /// Checks `cfg` first: `caf::sec::invalid_argument` when it is invalid.
  static caf::expected<std::unique_ptr<worker_pool>>
  make(caf::actor_system& sys, pool_config cfg);

  /// Shuts down with `wait` and the configured `shutdown_timeout`.
  ~worker_pool();

  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  /// Queues `fn(args...)`; the future holds its result (`caf::unit` for
  /// void; the error for a callable returning a failed `caf::expected`).
  /// After shutdown, or when the queue stays full, the future holds an
  /// error and `fn` never runs.
  template <class F, class... Args>
  auto submit(F fn, Args... args) {
    auto call = [fn = std::move(fn),
                 tup = std::make_tuple(std::move(args)...)]() mutable {
      return std::apply(fn, tup);
    };
    using r = std::invoke_result_t<decltype(call)&>;
    using t = typename detail::result_of_task<r>::type;
    auto [task, st] = detail::make_task<t>(std::move(call));
    push_one(std::move(task));
    return task_future<t>{std::move(st)};
  }

  /// Queues `fn(x)` for every `x` of `xs` (in one batch) and returns the
  /// futures in input order; a failed element holds its error.
  template <class F, class Range>
  auto map(F fn, const Range& xs) {
    using x_t = std::decay_t<decltype(*std::begin(xs))>;
    using r = std::invoke_result_t<F&, const x_t&>;
    using t = typename detail::result_of_task<r>::type;
    std::vector<task_future<t>> out;
    std::vector<detail::task_ptr> tasks;
    for (const auto& x : xs) {
      auto [task, st] =
          detail::make_task<t>([fn, x]() mutable { return fn(x); });
      tasks.push_back(std::move(task));
      out.emplace_back(std::move(st));
    }
    push_many(tasks);
    return out;
  }

  /// Changes the number of workers; extra workers stop after their
  /// current task. `caf::sec::invalid_argument` for 0.
  caf::error resize(std::size_t workers);

  /// Waits up to `timeout` until exactly `n` workers are alive.
  bool wait_for_workers(std::size_t n, caf::timespan timeout);

  /// Stops accepting tasks, then runs or cancels the queued ones. Returns
  /// `caf::sec::request_timeout` when `wait` is set and the workers did not
  /// stop in time (the tasks still queued then fail). Idempotent.
  caf::error shutdown(shutdown_options opts = {});

  /// Current counters.
  pool_stats stats() const;

  /// Kills one worker actor from outside (for fault drills). The kill takes
  /// effect between two of its batches, so no task is cut off; the
  /// supervisor replaces the worker. False when none is alive.
  bool kill_one_worker();

private:
  void push_one(detail::task_ptr task);
  void push_many(std::vector<detail::task_ptr>& tasks);

  std::shared_ptr<detail::pool_core> core_;
};

} // namespace actorbus::actors
