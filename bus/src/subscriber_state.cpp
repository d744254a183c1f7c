// A subscription's queue and its courier: what publishers push, and how
// the courier drains it into a callback or an actor.

#include "subscriber_state.hpp"

#include "bus_core.hpp"

#include <caf/actor_cast.hpp>
#include <caf/exit_reason.hpp>
#include <caf/logger.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <exception>
#include <utility>

namespace actorbus::bus::detail {

namespace {

// The subscription whose callback runs on this thread, if any.
thread_local const subscriber_state* current_subscription = nullptr;

} // namespace

caf::behavior
subscriber_state::courier(caf::event_based_actor* self,
                          std::shared_ptr<subscriber_state> state) {
  self->attach_functor(
      [state](const caf::error&) { state->courier_stopped(); });
  if (state->is_actor_) {
    self->monitor(state->target_);
    self->set_down_handler([state](caf::scheduled_actor*, caf::down_msg& dm) {
      if (dm.source != state->target_)
        return;
      // Nothing can arrive at a dead actor: no need to wait for acks.
      state->target_down_.store(true);
      auto now = std::chrono::steady_clock::now();
      state->core_->unsubscribe(state, "subscriber died", now, now);
    });
  }
  return {
      [self, state](drain_atom) { state->drain(self); },
  };
}

void subscriber_state::courier_stopped() {
  caf::actor courier; // released after the lock
  std::unique_lock guard{mtx_};
  // Stopped by the bus: already inactive, nothing in flight. Otherwise
  // (the runtime's shutdown) nothing will drain the queue or acknowledge
  // events any more.
  active_.store(false);
  target_down_.store(true);
  courier.swap(courier_);
  not_full_.notify_all();
  acked_.notify_all();
}

push_result subscriber_state::push(item&& x, bool may_block,
                                   std::optional<item>& evicted,
                                   dead_letter_reason& why) {
  caf::actor wake; // copied under the lock: deactivate may reset courier_
  item displaced;  // a spent event, destroyed after the lock is released
  {
    std::unique_lock guard{mtx_};
    if (!active_.load())
      return push_result::inactive;
    auto full = [this] {
      return queue_.size() + in_progress_ >= opts_.capacity;
    };
    if (full()) {
      switch (opts_.policy) {
      case overload_policy::block:
        if (may_block) {
          ++waiting_;
          auto ok = not_full_.wait_for(guard, opts_.block_timeout, [&] {
            return !full() || !active_.load();
          });
          --waiting_;
          if (!active_.load())
            return push_result::inactive;
          if (ok)
            break;
          why = dead_letter_reason::timed_out;
        } else {
          why = dead_letter_reason::dropped_newest;
        }
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return may_block ? push_result::refused : push_result::dropped;
      case overload_policy::drop_newest:
        why = dead_letter_reason::dropped_newest;
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return push_result::dropped;
      case overload_policy::drop_oldest:
        dropped_.fetch_add(1, std::memory_order_relaxed);
        if (queue_.empty()) { // everything is being handled right now
          why = dead_letter_reason::dropped_newest;
          return push_result::dropped;
        }
        why = dead_letter_reason::dropped_oldest;
        evicted.emplace(queue_.pop_front());
        break;
      case overload_policy::fail:
        why = dead_letter_reason::rejected;
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return push_result::refused;
      }
    }
    queue_.push_back(std::move(x), displaced);
    if (!scheduled_) {
      scheduled_ = true;
      wake = courier_;
    }
  }
  if (wake)
    caf::anon_send(wake, drain_msg_);
  return evicted ? push_result::dropped : push_result::queued;
}

std::vector<item>
subscriber_state::deactivate(std::chrono::steady_clock::time_point deadline,
                             bool* idle) {
  active_.store(false);
  std::vector<item> rest;
  // Wait for a running callback, unless this is that callback. For actor
  // subscribers this is a barrier: no send starts after it.
  if (current_subscription != this) {
    std::unique_lock<std::timed_mutex> wait{delivering_, std::defer_lock};
    auto ok = wait.try_lock_until(deadline);
    if (idle != nullptr)
      *idle = ok;
    // Taken by the courier but not handled: older than the queue. When
    // waiting timed out, the courier turns them into dead letters itself.
    if (ok) {
      taken_.take(taken_.size(), rest);
      taken_.release_spent();
    }
  } else if (idle != nullptr) {
    *idle = true; // the callback that cancels runs nothing after itself
  }
  item_ring<item> spent; // the queue's buffer, destroyed after the lock
  {
    std::unique_lock guard{mtx_};
    queue_.take(queue_.size(), rest);
    queue_.swap(spent); // nothing is queued after deactivation
    not_full_.notify_all();
  }
  return rest;
}

bool subscriber_state::on_subscriber_thread() const {
  auto* lg = caf::logger::current_logger();
  return lg != nullptr && lg == &core_->sys_->logger() &&
         lg->thread_local_aid() == target_.id();
}

bool subscriber_state::await_acks(
    std::chrono::steady_clock::time_point deadline) {
  caf::actor courier;
  {
    std::unique_lock guard{mtx_};
    if (is_actor_ && in_progress_ > 0 && !target_down_.load()) {
      // The courier receives the acknowledgements: it must not wait for
      // itself, and the subscribed actor cannot handle its mailbox while
      // it waits here.
      if (current_subscription != this && !on_subscriber_thread())
        acked_.wait_until(guard, deadline,
                          [this] { return in_progress_ == 0; });
      // Still in flight: the courier stays for the acknowledgements and
      // quits after the last one (finish_one_in_flight).
      if (in_progress_ > 0)
        return false;
    }
    courier.swap(courier_); // the handle must not outlive the system
  }
  if (courier)
    caf::anon_send_exit(courier, caf::exit_reason::user_shutdown);
  return true;
}

void subscriber_state::deliver_one(item& x) {
  if (!active_.load(std::memory_order_relaxed)) {
    if (x.sink)
      x.sink->fail();
    core_->dead_letter(x, dead_letter_reason::subscriber_down, pattern_,
                       "subscription cancelled");
    return;
  }
  delivery d{&x.topic->name_, &x.publisher, &x.event};
  std::string failure;
  auto reason = dead_letter_reason::handler_failed;
  try {
    auto reply = fn_(d);
    if (reply) {
      count_delivered(x);
      if (x.sink)
        x.sink->offer(*reply);
      return;
    }
    reason = dead_letter_reason::type_mismatch;
    failure = "the subscriber expects another type";
  } catch (const std::exception& e) {
    failure = e.what();
    if (failure.empty())
      failure = "exception";
  } catch (...) {
    failure = "unknown exception";
  }
  if (x.sink)
    x.sink->fail();
  core_->dead_letter(x, reason, pattern_, std::move(failure));
}

void subscriber_state::finish_one_in_flight(caf::event_based_actor* self) {
  bool more = false;
  bool quit = false;
  caf::actor done; // the courier's own handle, released outside the lock
  {
    std::unique_lock guard{mtx_};
    --in_progress_;
    if (waiting_ > 0)
      not_full_.notify_all();
    if (!active_.load()) {
      if (in_progress_ == 0) {
        acked_.notify_all();
        done.swap(courier_);
        quit = true;
      }
    } else if (!queue_.empty() && !scheduled_) {
      scheduled_ = true;
      more = true;
    }
  }
  if (quit)
    self->quit();
  if (more)
    self->send(self, drain_v);
}

void subscriber_state::deliver_to_actor(caf::event_based_actor* self, item& x) {
  std::unique_lock<std::timed_mutex> guard{delivering_};
  if (!active_.load()) {
    if (x.sink)
      x.sink->fail();
    core_->dead_letter(x, dead_letter_reason::subscriber_down, pattern_,
                       "subscription cancelled");
    finish_one_in_flight(self);
    return;
  }
  auto target = caf::actor_cast<caf::actor>(target_);
  if (!target) { // died; the down message unsubscribes it
    if (x.sink)
      x.sink->fail();
    core_->dead_letter(x, dead_letter_reason::subscriber_down, pattern_,
                       "subscriber died");
    finish_one_in_flight(self);
    return;
  }
  auto msg = caf::message::concat(
      caf::make_message(x.topic->name_, x.publisher), x.event);
  auto me = this;
  if (x.sink) {
    count_delivered(x);
    x.sink->ask(self, target, std::move(msg),
                [me, self] { me->finish_one_in_flight(self); });
    return;
  }
  // The courier holds `this` (through its behavior) for as long as it
  // runs, and response handlers run only while it runs.
  self->request(target, caf::infinite, std::move(msg))
      .then([me, self, x] { me->finish_one_in_flight(self); },
            [me, self, x](caf::error& err) {
              // A reply of any type means the actor handled the event.
              if (err != caf::sec::unexpected_response) {
                auto reason = err == caf::sec::request_receiver_down
                                  ? dead_letter_reason::subscriber_down
                                  : dead_letter_reason::handler_failed;
                me->core_->dead_letter(x, reason, me->pattern_,
                                       self->system().render(err));
              }
              me->finish_one_in_flight(self);
            });
  count_delivered(x);
}

void subscriber_state::drain(caf::event_based_actor* self) {
  if (!is_actor_) {
    drain_callback(self);
    return;
  }
  {
    std::unique_lock guard{mtx_};
    auto window = opts_.max_in_flight > in_progress_
                      ? opts_.max_in_flight - in_progress_
                      : 0;
    std::size_t n = std::min({queue_.size(), core_->cfg_.batch_size, window});
    if (waiting_ > 0)
      not_full_.notify_all();
    if (n == 0) {
      scheduled_ = false;
      return;
    }
    queue_.take(n, batch_);
    in_progress_ += n;
  }
  for (auto& x : batch_)
    deliver_to_actor(self, x);
  batch_.clear();
  // Responses call finish_one_in_flight, which schedules the next drain.
  std::unique_lock guard{mtx_};
  scheduled_ = false;
  if (!queue_.empty() && in_progress_ < opts_.max_in_flight) {
    scheduled_ = true;
    guard.unlock();
    self->send(self, drain_v);
  }
}

void subscriber_state::drain_callback(caf::event_based_actor* self) {
  // One lock per pass: cancel waits for the callback running now, and
  // takes what is left in `taken_` only while no pass runs.
  std::unique_lock<std::timed_mutex> delivering{delivering_};
  // drop_oldest takes one batch into taken_ (below): its spent slots die
  // here, outside the publishers' lock, so `displaced` stays empty.
  item displaced;
  if (opts_.policy == overload_policy::drop_oldest && taken_.empty())
    taken_.release_spent();
  {
    std::unique_lock guard{mtx_};
    // Handled items stop counting toward the capacity.
    in_progress_ = taken_.size();
    if (waiting_ > 0)
      not_full_.notify_all();
    if (taken_.empty()) {
      if (queue_.empty()) {
        // Linger a few empty passes before going idle: a publisher in the
        // middle of a burst then finds the courier awake and need not wake
        // it (a wake-up costs a scheduler enqueue and often a futex call).
        if (idle_passes_ < core_->cfg_.linger) {
          ++idle_passes_;
          guard.unlock();
          delivering.unlock();
          self->send(self, drain_msg_);
          return;
        }
        idle_passes_ = 0;
        scheduled_ = false;
        // Idle: no publisher is about to reuse the slots, so an idle
        // subscription holds no spent events.
        guard.unlock();
        // Spent events die outside the publishers' lock: an event's
        // destructor may publish to this very subscription.
        taken_.release_spent();
        guard.lock();
        if (queue_.empty())
          queue_.swap(taken_); // taken_ holds no spent event now
        guard.unlock();
        taken_.release_spent();
        return;
      }
      // Take the whole queue in O(1): the publishers' lock is held for a
      // swap, not for moving each event (publishers on another core would
      // spin meanwhile). Under drop_oldest, taken events could no longer
      // be evicted for newer ones: take one batch only.
      if (opts_.policy != overload_policy::drop_oldest)
        queue_.swap(taken_);
      else
        while (taken_.size() < core_->cfg_.batch_size && !queue_.empty())
          taken_.push_back(queue_.pop_front(), displaced);
      in_progress_ = taken_.size();
    }
    idle_passes_ = 0;
  }
  current_subscription = this;
  auto handle_front = [this] {
    auto& x = taken_.front();
    deliver_one(x);
    x.sink = nullptr; // the gather may finish without waiting for the slot
    taken_.drop_front();
  };
  for (std::size_t i = 0; i < core_->cfg_.batch_size && !taken_.empty(); ++i)
    handle_front();
  // Cancelled meanwhile (by a callback, or after cancel gave up waiting):
  // the rest become dead letters now, before the courier stops.
  while (!active_.load() && !taken_.empty())
    handle_front();
  current_subscription = nullptr;
  delivering.unlock();
  // Stay scheduled: the next pass takes more or lingers.
  self->send(self, drain_msg_);
}

} // namespace actorbus::bus::detail
