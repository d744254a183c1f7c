#pragma once

// A bounded FIFO queue with the semantics of Python's `asyncio.Queue`, for
// threads and actors alike.
//
//   async_queue<std::string> q{100};          // blocks putters when full
//   q.put("job", 1s);                         // from a thread
//   caf::expected<std::string> job = q.get(1s);
//   q.async_get(self, 1s, [](caf::expected<std::string> x) { ... });
//
//  * `put` waits while the queue is full, `get` waits while it is empty;
//    every wait has a timeout.
//  * What a full queue does with a put is the `runtime::overload_policy`
//    given to the constructor: `block` (the default, asyncio's) waits for
//    room up to the put's timeout, then fails with `errc::timeout`; `fail`
//    refuses at once with `errc::full` (what `try_put` does under `block`);
//    `drop_newest` discards the new item and `drop_oldest` the oldest queued
//    one, the put succeeds and `dropped()` counts the item (which never
//    needs a `task_done`).
//  * `task_done` / `join`: every successful put adds an unfinished task;
//    `task_done` marks one finished; `join` waits until none is left.
//  * `close`: no more puts (they fail with `closed`); getters still drain
//    what is queued, then fail with `closed`; waiting putters fail with
//    `closed` and keep their item. End of data needs no sentinel value.
//
// Threads use the blocking members (`put`, `get`, `join`); never call those
// from an actor's handler. Actors use `async_put` / `async_get`: they return
// at once and the continuation runs later inside the same actor, with the
// item or an error (a timeout included, measured on the actor system's clock,
// so virtual time in deterministic tests). Waiters of both kinds are served
// first come, first served within their kind.
//
// Errors are `actors::errc` (actors/error.hpp): `closed`, `timeout`,
// `full`, `no_unfinished_task`; compare with `err == errc::closed`.
//
// A put that fails never loses the item: the blocking `put` moves from its
// argument only on success, `async_put` hands it back to the continuation.
// All members are thread-safe. The queue must outlive the threads using it;
// actors still waiting when it is destroyed get an error.

#include "actorbus/actors/error.hpp"
#include "actorbus/runtime/overload.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/send.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace actorbus::actors {

namespace detail {

/// Spawns the actor that wakes actors waiting on an async queue. `expire(id)`
/// is called when the wait `id` times out; it returns whether the wait was
/// still pending (and is now failed with a timeout).
caf::actor spawn_async_queue_relay(caf::actor_system& sys,
                                   std::function<bool(uint64_t)> expire);

/// Tells the relay that wait `id` has its result.
void notify_async_queue_relay(const caf::actor& relay, uint64_t id);

/// Starts the wait `id` of `self` on `relay`; `done` runs in `self` once the
/// wait has a result, `failed` if the relay is gone.
void await_async_queue_relay(caf::event_based_actor* self,
                             const caf::actor& relay, uint64_t id,
                             caf::timespan timeout, std::function<void()> done,
                             std::function<void(caf::error)> failed);

void stop_async_queue_relay(const caf::actor& relay);

/// Runs `fn` in `self` from a reply of `relay`, which answers at once:
/// later, on a fresh stack.
void defer_on_async_queue_relay(caf::event_based_actor* self,
                                const caf::actor& relay,
                                std::function<void()> fn,
                                std::function<void(caf::error)> failed);

/// How many continuations of async gets and puts that had their result at
/// once run inside each other on this thread. A consumer that asks for its
/// next item in the continuation of the last recurses while items wait;
/// past `max_inline_nesting` the continuation is deferred (one message to
/// the relay and back), so the stack stays bounded.
inline thread_local int async_queue_nesting = 0;
inline constexpr int max_inline_nesting = 16;

/// Runs `fn` now, or deferred when continuations nest too deeply.
template <class Relay>
void run_async_queue_continuation(caf::event_based_actor* self, Relay relay,
                                  std::function<void()> fn,
                                  std::function<void(caf::error)> failed) {
  if (async_queue_nesting < max_inline_nesting) {
    ++async_queue_nesting;
    struct unnest {
      ~unnest() {
        --async_queue_nesting;
      }
    } guard;
    fn();
    return;
  }
  defer_on_async_queue_relay(self, relay(), std::move(fn), std::move(failed));
}

} // namespace detail

/// A FIFO queue of `T` for threads and actors, bounded or not, with
/// `asyncio.Queue`'s put/get/task_done/join/close. Thread-safe; not
/// copyable.
template <class T>
class async_queue {
public:
  /// A queue holding at most `capacity` items (0: unbounded) that treats a
  /// put into a full queue by `on_full`.
  explicit async_queue(
      std::size_t capacity = 0,
      runtime::overload_policy on_full = runtime::overload_policy::block)
      : core_(std::make_shared<core>(capacity, on_full)) {
    // nop
  }

  async_queue(const async_queue&) = delete;
  async_queue& operator=(const async_queue&) = delete;

  /// Closes the queue and stops its relay actor.
  ~async_queue() {
    close();
    caf::actor relay;
    {
      std::lock_guard<std::mutex> guard{core_->mtx};
      relay = std::move(core_->relay);
    }
    if (relay)
      detail::stop_async_queue_relay(relay);
  }

  // -- threads ----------------------------------------------------------------

  /// Puts `x`; a full queue waits at most `timeout` for room (`block`) or
  /// applies its overload policy. Moves from `x` only when it is queued.
  /// Errors: `closed`, `timeout` (block), `full` (fail).
  caf::error put(T&& x, caf::timespan timeout) {
    std::unique_lock<std::mutex> guard{core_->mtx};
    auto& c = *core_;
    if (!c.closed && !c.has_room()) {
      if (c.on_full != runtime::overload_policy::block) {
        auto queued = c.overflow();
        if (!queued)
          return std::move(queued.error());
        if (*queued)
          c.push(std::move(x));
        return {};
      }
      if (!c.not_full.wait_for(guard, timeout,
                               [&] { return c.closed || c.has_room(); }))
        return make_error(errc::timeout,
                          "async_queue.put: no room within the timeout");
    }
    if (c.closed)
      return make_error(errc::closed, "async_queue.put: the queue is closed");
    c.push(std::move(x));
    return {};
  }

  caf::error put(const T& x, caf::timespan timeout) {
    T copy = x;
    return put(std::move(copy), timeout);
  }

  /// Takes the oldest item, waiting at most `timeout` for one. Errors:
  /// `closed` (closed and drained), `timeout`.
  caf::expected<T> get(caf::timespan timeout) {
    std::unique_lock<std::mutex> guard{core_->mtx};
    auto& c = *core_;
    if (!c.not_empty.wait_for(guard, timeout,
                              [&] { return c.closed || !c.items.empty(); }))
      return make_error(errc::timeout,
                        "async_queue.get: no item within the timeout");
    if (c.items.empty())
      return make_error(errc::closed,
                        "async_queue.get: the queue is closed and drained");
    return c.pop();
  }

  /// Puts `x` without waiting: a full queue under `block` refuses it with
  /// `full`, the other policies act as in `put`. Moves from `x` only when it
  /// is queued.
  caf::error try_put(T&& x) {
    std::lock_guard<std::mutex> guard{core_->mtx};
    auto& c = *core_;
    if (c.closed)
      return make_error(errc::closed, "async_queue.put: the queue is closed");
    if (!c.has_room()) {
      auto queued = c.overflow();
      if (!queued)
        return std::move(queued.error());
      if (!*queued)
        return {};
    }
    c.push(std::move(x));
    return {};
  }

  /// Takes the oldest item if there is one now.
  std::optional<T> try_get() {
    auto x = get(caf::timespan{0});
    if (!x)
      return std::nullopt;
    return std::move(*x);
  }

  /// Marks one item taken earlier as processed.
  caf::error task_done() {
    std::lock_guard<std::mutex> guard{core_->mtx};
    auto& c = *core_;
    if (c.unfinished == 0)
      return make_error(errc::no_unfinished_task,
                        "async_queue.task_done: no unfinished task");
    if (--c.unfinished == 0)
      c.all_done.notify_all();
    return {};
  }

  /// Waits at most `timeout` until every item put was marked `task_done`.
  caf::error join(caf::timespan timeout) {
    std::unique_lock<std::mutex> guard{core_->mtx};
    auto& c = *core_;
    if (!c.all_done.wait_for(guard, timeout, [&] { return c.unfinished == 0; }))
      return make_error(errc::timeout,
                        "async_queue.join: tasks left after the timeout");
    return {};
  }

  /// No more puts. Idempotent.
  void close() {
    std::vector<uint64_t> woken;
    caf::actor relay;
    {
      std::lock_guard<std::mutex> guard{core_->mtx};
      auto& c = *core_;
      if (c.closed)
        return;
      c.closed = true;
      for (auto& g : c.getters) {
        g->result.emplace(closed_error());
        woken.push_back(g->id);
      }
      c.getters.clear();
      for (auto& p : c.putters) {
        p->error = closed_error();
        p->done = true;
        woken.push_back(p->id);
      }
      c.putters.clear();
      relay = c.relay;
    }
    core_->not_empty.notify_all();
    core_->not_full.notify_all();
    for (auto id : woken)
      detail::notify_async_queue_relay(relay, id);
  }

  std::size_t size() const {
    std::lock_guard<std::mutex> guard{core_->mtx};
    return core_->items.size();
  }

  std::size_t capacity() const noexcept {
    return core_->capacity;
  }

  /// What a put into the full queue does.
  runtime::overload_policy on_full() const noexcept {
    return core_->on_full;
  }

  /// Items discarded by `drop_newest` or `drop_oldest` so far.
  std::size_t dropped() const {
    std::lock_guard<std::mutex> guard{core_->mtx};
    return core_->dropped;
  }

  bool closed() const {
    std::lock_guard<std::mutex> guard{core_->mtx};
    return core_->closed;
  }

  /// Items put and not yet marked `task_done`.
  std::size_t unfinished() const {
    std::lock_guard<std::mutex> guard{core_->mtx};
    return core_->unfinished;
  }

  // -- actors -----------------------------------------------------------------

  /// Takes the oldest item for `self` without blocking it: `then` runs in
  /// `self` with the item, or with `closed` / `timeout`.
  void async_get(caf::event_based_actor* self, caf::timespan timeout,
                 std::function<void(caf::expected<T>)> then) {
    auto g = std::make_shared<getter>();
    caf::actor relay;
    {
      std::lock_guard<std::mutex> guard{core_->mtx};
      auto& c = *core_;
      if (!c.items.empty()) {
        g->result.emplace(c.pop());
      } else if (c.closed) {
        g->result.emplace(closed_error());
      } else {
        relay = c.relay_for(self->system(), core_);
        g->id = c.next_id++;
        c.getters.push_back(g);
      }
    }
    if (!relay) {
      detail::run_async_queue_continuation(
          self, [&] { return relay_of(self); },
          [g, then] { then(std::move(*g->result)); },
          // The outcome is decided already: deliver it all the same.
          [g, then](caf::error) { then(std::move(*g->result)); });
      return;
    }
    detail::await_async_queue_relay(
        self, relay, g->id, timeout, [g, then] { then(std::move(*g->result)); },
        [g, then](caf::error err) {
          if (g->result)
            then(std::move(*g->result));
          else
            then(std::move(err));
        });
  }

  /// Puts `x` for `self` without blocking it: `then` runs in `self` with no
  /// error once the item is queued, or with `closed` / `timeout` and the
  /// item handed back.
  void async_put(caf::event_based_actor* self, T x, caf::timespan timeout,
                 std::function<void(caf::error, std::optional<T>)> then) {
    auto p = std::make_shared<putter>();
    caf::actor relay;
    {
      std::lock_guard<std::mutex> guard{core_->mtx};
      auto& c = *core_;
      if (c.closed) {
        p->error = closed_error();
        p->item.emplace(std::move(x));
        p->done = true;
      } else if (c.has_room()) {
        c.push(std::move(x));
        p->done = true;
      } else if (c.on_full != runtime::overload_policy::block) {
        auto queued = c.overflow();
        if (!queued) {
          p->error = std::move(queued.error());
          p->item.emplace(std::move(x));
        } else if (*queued) {
          c.push(std::move(x));
        }
        p->done = true;
      } else {
        relay = c.relay_for(self->system(), core_);
        p->id = c.next_id++;
        p->item.emplace(std::move(x));
        c.putters.push_back(p);
      }
    }
    if (!relay) {
      detail::run_async_queue_continuation(
          self, [&] { return relay_of(self); },
          [p, then] { then(std::move(p->error), std::move(p->item)); },
          // The outcome is decided already: deliver it all the same.
          [p, then](caf::error) {
            then(std::move(p->error), std::move(p->item));
          });
      return;
    }
    detail::await_async_queue_relay(
        self, relay, p->id, timeout,
        [p, then] { then(std::move(p->error), std::move(p->item)); },
        [p, then](caf::error err) {
          if (p->done)
            then(std::move(p->error), std::move(p->item));
          else
            then(std::move(err), std::move(p->item));
        });
  }

private:
  static caf::error closed_error() {
    return make_error(errc::closed, "async_queue: the queue is closed");
  }

  caf::actor relay_of(caf::event_based_actor* self) {
    std::lock_guard<std::mutex> guard{core_->mtx};
    return core_->relay_for(self->system(), core_);
  }

  struct getter {
    uint64_t id = 0;
    std::optional<caf::expected<T>> result;
  };

  struct putter {
    uint64_t id = 0;
    std::optional<T> item; // still ours while set
    caf::error error;
    bool done = false;
  };

  struct core {
    core(std::size_t cap, runtime::overload_policy policy)
        : capacity(cap)
        , on_full(policy) {
      // nop
    }

    std::size_t capacity;
    runtime::overload_policy on_full;
    std::size_t dropped = 0;
    std::mutex mtx;
    std::condition_variable not_empty;
    std::condition_variable not_full;
    std::condition_variable all_done;
    std::deque<T> items;
    std::size_t unfinished = 0;
    bool closed = false;
    std::deque<std::shared_ptr<getter>> getters;
    std::deque<std::shared_ptr<putter>> putters;
    uint64_t next_id = 1;
    caf::actor relay;

    bool has_room() const {
      return capacity == 0 || items.size() < capacity;
    }

    // Requires the lock and a full queue. Applies a policy other than block:
    // the error of `fail`, or whether the new item goes in (false: dropped).
    caf::expected<bool> overflow() {
      switch (on_full) {
      case runtime::overload_policy::drop_newest:
        ++dropped;
        return false;
      case runtime::overload_policy::drop_oldest:
        items.pop_front();
        ++dropped;
        if (--unfinished == 0)
          all_done.notify_all();
        return true;
      default:
        return make_error(errc::full, "async_queue.put: the queue is full");
      }
    }

    // Requires the lock. Hands `x` to the first waiting actor, if any.
    void push(T&& x) {
      ++unfinished;
      if (!getters.empty()) {
        auto g = std::move(getters.front());
        getters.pop_front();
        g->result.emplace(std::move(x));
        detail::notify_async_queue_relay(relay, g->id);
        return;
      }
      items.push_back(std::move(x));
      not_empty.notify_one();
    }

    // Requires the lock and an item. Lets a waiting actor's put in.
    T pop() {
      T x = std::move(items.front());
      items.pop_front();
      if (!putters.empty()) {
        auto p = std::move(putters.front());
        putters.pop_front();
        ++unfinished;
        items.push_back(std::move(*p->item));
        p->item.reset();
        p->done = true;
        detail::notify_async_queue_relay(relay, p->id);
      } else {
        not_full.notify_one();
      }
      return x;
    }

    // Requires the lock. Fails a pending wait on timeout.
    bool expire(uint64_t id) {
      for (auto i = getters.begin(); i != getters.end(); ++i) {
        if ((*i)->id == id) {
          (*i)->result.emplace(make_error(
              errc::timeout, "async_queue.get: no item within the timeout"));
          getters.erase(i);
          return true;
        }
      }
      for (auto i = putters.begin(); i != putters.end(); ++i) {
        if ((*i)->id == id) {
          (*i)->error = make_error(
              errc::timeout, "async_queue.put: no room within the timeout");
          (*i)->done = true;
          putters.erase(i);
          return true;
        }
      }
      return false;
    }

    // Requires the lock.
    const caf::actor& relay_for(caf::actor_system& sys,
                                const std::shared_ptr<core>& self) {
      if (!relay) {
        std::weak_ptr<core> weak = self;
        relay = detail::spawn_async_queue_relay(sys, [weak](uint64_t id) {
          auto c = weak.lock();
          if (!c)
            return false;
          std::lock_guard<std::mutex> guard{c->mtx};
          return c->expire(id);
        });
      }
      return relay;
    }
  };

  std::shared_ptr<core> core_;
};

} // namespace actorbus::actors
