#pragma once

// Implementation templates of worker_pool.hpp (not for users): task and
// future state, and the bodies of `task_future`, `completion_queue`,
// `as_completed`, `worker_pool::submit` and `worker_pool::map`.

#include "actorbus/actors/detail/pool_item.hpp"

#include <caf/actor_control_block.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/message.hpp>
#include <caf/response_promise.hpp>
#include <caf/sec.hpp>
#include <caf/timespan.hpp>
#include <caf/unit.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace actorbus::actors::detail {

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

/// A queued callable of a worker pool, type-erased.
class task_base : public pool_item {
public:
  /// Runs the task and stores its result; throws when the task throws.
  virtual void run() = 0;
};

using task_ptr = std::shared_ptr<task_base>;

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

/// Results of `as_completed`'s futures, in completion order.
template <class T>
struct completion_state {
  std::mutex mtx;
  std::condition_variable cv;
  std::deque<std::pair<std::size_t, caf::expected<T>>> done;
  std::size_t total = 0;
};

} // namespace actorbus::actors::detail

namespace actorbus::actors {

template <class T>
bool task_future<T>::ready() const {
  return st_ && st_->ready();
}

template <class T>
caf::expected<T> task_future<T>::get(caf::timespan timeout) const {
  if (!st_)
    return caf::make_error(caf::sec::invalid_argument, "empty task_future");
  if (!wait(timeout))
    return caf::make_error(caf::sec::request_timeout,
                           "task_future: no result yet");
  return *st_->result;
}

template <class T>
bool task_future<T>::wait(caf::timespan timeout) const {
  return st_ && st_->wait(timeout);
}

template <class T>
template <class F>
void task_future<T>::then(F fn) const {
  st_->then(std::move(fn));
}

template <class T>
template <class Self>
caf::response_promise task_future<T>::respond(Self* self) const {
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

template <class T>
std::optional<std::pair<std::size_t, caf::expected<T>>>
completion_queue<T>::next(caf::timespan timeout) {
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

template <class T>
std::size_t completion_queue<T>::remaining() const {
  std::lock_guard<std::mutex> guard{st_->mtx};
  return st_->total - handed_;
}

template <class T>
completion_queue<T> as_completed(const std::vector<task_future<T>>& fs) {
  auto st = std::make_shared<detail::completion_state<T>>();
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

template <class F, class... Args>
auto worker_pool::submit(F fn, Args... args) {
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

template <class F, class Range>
auto worker_pool::map(F fn, const Range& xs) {
  using x_t = std::decay_t<decltype(*std::begin(xs))>;
  using r = std::invoke_result_t<F&, const x_t&>;
  using t = typename detail::result_of_task<r>::type;
  std::vector<task_future<t>> out;
  std::vector<detail::task_ptr> tasks;
  for (const auto& x : xs) {
    auto [task, st] = detail::make_task<t>([fn, x]() mutable { return fn(x); });
    tasks.push_back(std::move(task));
    out.emplace_back(std::move(st));
  }
  push_many(tasks);
  return out;
}

} // namespace actorbus::actors
