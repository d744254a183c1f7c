#include "actorbus/actors/handler_pool.hpp"

#include "actorbus/runtime/runtime.hpp"

#include "pool_core.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_clock.hpp>
#include <caf/actor_companion.hpp>
#include <caf/atom.hpp>
#include <caf/exit_reason.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/message_id.hpp>
#include <caf/send.hpp>
#include <caf/system_messages.hpp>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace actorbus::actors {

namespace detail {

namespace {

// Sent by the actor clock to the pool when a blocked job's wait may be over.
using overflow_check_atom = caf::atom_constant<caf::atom("abHpTick")>;
constexpr overflow_check_atom overflow_check_v{};

/// Sends `content` to `dest` as the reply `mid` from `from`.
void reply_to(const caf::strong_actor_ptr& from, caf::strong_actor_ptr dest,
              caf::message_id mid,
              caf::mailbox_element::forwarding_stack stages,
              caf::message content) {
  if (!mid.is_request())
    return;
  if (!stages.empty()) {
    dest = std::move(stages.back());
    stages.pop_back();
  }
  if (!dest)
    return;
  dest->enqueue(caf::make_mailbox_element(from, mid.response_id(),
                                          std::move(stages),
                                          std::move(content)),
                nullptr);
}

/// A message sent to the pool, waiting for or held by a worker.
class job final : public pool_item {
public:
  job(caf::strong_actor_ptr pool, caf::mailbox_element& x, caf::message msg)
      : pool_(std::move(pool))
      , sender_(x.sender)
      , mid_(x.mid)
      , stages_(x.stages)
      , content_(std::move(msg)) {}

  /// Answers the job's sender with `content` (nothing for a job sent
  /// without `request`); later answers do nothing.
  void answer(caf::message content) {
    if (answered_)
      return;
    answered_ = true;
    reply_to(pool_, std::move(sender_), mid_, std::move(stages_),
             std::move(content));
  }

  void fail(caf::error err) override {
    answer(caf::make_message(std::move(err)));
  }

  const caf::message& content() const noexcept {
    return content_;
  }

  /// Set while the job waits beyond the queue's capacity.
  std::optional<caf::actor_clock::time_point> deadline;

private:
  caf::strong_actor_ptr pool_;
  caf::strong_actor_ptr sender_;
  caf::message_id mid_;
  caf::mailbox_element::forwarding_stack stages_;
  caf::message content_;
  bool answered_ = false;
};

using job_ptr = std::shared_ptr<job>;

/// One worker and the job it holds.
struct slot {
  caf::actor worker;
  /// Request id of the job sent to the worker; 0 while idle.
  uint64_t busy = 0;
  job_ptr held;
  /// Told to stop (shrinking or shutdown): not replaced when it exits.
  bool retiring = false;
  /// Threw out of a handler: its reply is the crash's error, then it ends.
  bool crashed = false;
};

/// A job to hand to a worker once the lock is released.
struct dispatch {
  caf::actor worker;
  uint64_t id;
  caf::message content;
};

std::optional<std::string> check(const worker_factory& make_worker,
                                 const pool_config& cfg) {
  if (!make_worker)
    return "handler_pool.make_worker: must not be empty";
  return check_config("handler_pool", cfg);
}

} // namespace

/// Jobs are dispatched: the pool sends a job to an idle worker as a request
/// and forwards the worker's reply to the job's sender.
class handler_pool_core final : public pool_core {
public:
  handler_pool_core(caf::actor_system& sys, runtime::runtime* rt,
                    worker_factory make_worker, const pool_config& cfg,
                    worker_threads threads)
      : pool_core("handler_pool", sys, rt, cfg)
      , make_worker_(std::move(make_worker))
      , threads_(threads) {}

  void start() {
    auto companion = sys_.spawn<caf::actor_companion, caf::hidden>();
    std::weak_ptr<handler_pool_core> weak = self_ptr();
    caf::actor_cast<caf::actor_companion*>(companion)->on_enqueue(
        [weak](caf::mailbox_element_ptr ptr) {
          if (auto core = weak.lock(); core && ptr)
            core->receive(*ptr);
        });
    self_ = caf::actor_cast<caf::strong_actor_ptr>(companion);
    rebalance();
  }

  caf::actor handle() const {
    return caf::actor_cast<caf::actor>(self_);
  }

  /// Ends the pool's address; called once the pool object is gone.
  void close_address() {
    // Handles may outlive the pool: their requests are answered at once.
    auto self = self_;
    if (auto c = caf::actor_cast<caf::actor_companion*>(self_))
      c->on_enqueue([self](caf::mailbox_element_ptr ptr) {
        if (ptr)
          reply_to(self, ptr->sender, ptr->mid, std::move(ptr->stages),
                   caf::make_message(caf::make_error(
                       caf::sec::request_receiver_down, "handler_pool: gone")));
      });
  }

protected:
  /// Spawns missing workers, hands queued jobs to idle ones and retires idle
  /// ones that are surplus, or all once the pool closed and nothing waits.
  void rebalance() override {
    std::vector<dispatch> out;
    std::vector<caf::actor> stop;
    std::size_t grow = 0;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      grow = missing_locked(active_locked(), false);
      dispatch_locked(out);
      retire_idle_locked(stop);
    }
    retire(stop);
    send_all(out);
    add_workers(grow);
  }

  std::pair<std::size_t, caf::actor> census_locked() const override {
    // Retiring workers count until they have exited.
    auto n = slots_.size();
    return {n, n == 0 ? caf::actor{} : slots_.front().worker};
  }

private:
  std::shared_ptr<handler_pool_core> self_ptr() {
    return std::static_pointer_cast<handler_pool_core>(shared_from_this());
  }

  // -- incoming messages -----------------------------------------------------

  void receive(caf::mailbox_element& x) {
    auto msg = x.move_content_to_message();
    if (x.mid.is_response()) {
      reply(x.mid, x.sender == nullptr, std::move(msg));
      return;
    }
    if (msg.match_elements<caf::exit_msg>() ||
        msg.match_elements<caf::down_msg>())
      return;
    if (!x.sender && msg.match_elements<overflow_check_atom>()) {
      expire_overflow();
      return;
    }
    admit(std::make_shared<job>(self_, x, std::move(msg)));
  }

  void admit(job_ptr j) {
    std::vector<dispatch> out;
    item_ptr x = j;
    item_ptr evicted;
    caf::error err;
    bool refused = false;
    std::optional<caf::actor_clock::time_point> check_at;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      switch (admit_locked(x, err, evicted)) {
      case admission::queued:
        dispatch_locked(out);
        break;
      case admission::wait:
        // The sender may be an actor: the job waits here, not its thread.
        j->deadline = sys_.clock().now() + cfg_.block_timeout;
        check_at = j->deadline;
        queue_.push_back(std::move(x));
        break;
      case admission::refused:
        refused = true;
        break;
      }
    }
    if (refused)
      j->fail(std::move(err));
    if (evicted)
      evicted->fail(caf::make_error(caf::sec::unavailable_or_would_block,
                                    "handler_pool: dropped for a newer job, "
                                    "the queue was full (drop_oldest)"));
    if (check_at)
      sys_.clock().schedule_message(
          *check_at, self_,
          caf::make_mailbox_element(nullptr, caf::make_message_id(), {},
                                    overflow_check_v));
    send_all(out);
  }

  /// A worker answered a job, or the job bounced off a worker that died
  /// (CAF answers such a request anonymously with an error).
  void reply(caf::message_id mid, bool anonymous, caf::message msg) {
    auto id = mid.request_id().integer_value();
    bool failed = msg.match_elements<caf::error>();
    job_ptr done;
    job_ptr lost;
    std::vector<dispatch> out;
    std::vector<caf::actor> stop;
    caf::actor crashed;
    std::size_t grow = 0;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto i = std::find_if(slots_.begin(), slots_.end(),
                            [id](const slot& s) { return s.busy == id; });
      if (i == slots_.end())
        return; // its worker was handled as lost already
      if (failed && (anonymous || i->crashed)) {
        crashed = i->worker;
        grow = lost_locked(i, msg.get_as<caf::error>(0), lost);
      } else {
        completed_.fetch_add(1, std::memory_order_relaxed);
        done = std::move(i->held);
        i->busy = 0;
      }
      dispatch_locked(out);
      retire_idle_locked(stop);
      state_cv_.notify_all();
    }
    if (done)
      done->answer(std::move(msg));
    if (lost)
      lost->fail(crash_error(caf::to_string(msg.get_as<caf::error>(0))));
    if (crashed)
      caf::anon_send_exit(crashed, caf::exit_reason::kill);
    retire(stop);
    add_workers(grow);
    send_all(out);
  }

  /// Worker `who` exited with `reason`.
  void worker_down(const caf::actor_addr& who, const caf::error& reason) {
    job_ptr lost;
    std::vector<dispatch> out;
    std::vector<item_ptr> stranded;
    std::size_t grow = 0;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto i = std::find_if(slots_.begin(), slots_.end(), [&](const slot& s) {
        return s.worker.address() == who;
      });
      if (i == slots_.end())
        return;
      grow = lost_locked(i, reason, lost);
      dispatch_locked(out);
      stranded = stranded_locked();
      state_cv_.notify_all();
    }
    if (lost)
      lost->fail(crash_error(caf::to_string(reason)));
    fail_all(stranded, closed_error());
    add_workers(grow);
    send_all(out);
  }

  /// Removes the slot of a dead worker, requeues its job or hands it back
  /// in `lost` to fail, and returns how many workers to spawn in its place.
  std::size_t lost_locked(std::vector<slot>::iterator i, const caf::error&,
                          job_ptr& lost) {
    bool expected = i->retiring;
    job_ptr held = std::move(i->held);
    slots_.erase(i);
    if (!expected)
      ++crashes_;
    if (held) {
      item_ptr x = held;
      held->deadline.reset();
      if (!requeue_locked(x))
        lost = std::move(held);
    }
    if (expected)
      return 0;
    return missing_locked(active_locked(), true);
  }

  void expire_overflow() {
    std::vector<item_ptr> late;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto now = sys_.clock().now();
      auto keep = std::min(cfg_.queue_capacity, queue_.size());
      for (auto i = queue_.begin() + static_cast<std::ptrdiff_t>(keep);
           i != queue_.end();) {
        auto& j = static_cast<job&>(**i);
        if (j.deadline && *j.deadline <= now) {
          late.push_back(std::move(*i));
          i = queue_.erase(i);
        } else {
          ++i;
        }
      }
      state_cv_.notify_all();
    }
    fail_all(late, no_room_in_time());
  }

  // -- workers ---------------------------------------------------------------

  void add_workers(std::size_t n) {
    for (std::size_t k = 0; k < n; ++k) {
      auto w = spawn_worker();
      track(w);
      std::vector<dispatch> out;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        started_locked();
        if (closed_) {
          retire_one(w);
          continue;
        }
        slots_.push_back(slot{w, 0, nullptr, false, false});
        dispatch_locked(out);
        state_cv_.notify_all();
      }
      std::weak_ptr<handler_pool_core> weak = self_ptr();
      // Runs at once when `w` is already dead.
      w->attach_functor([weak, addr = w.address()](const caf::error& reason) {
        if (auto core = weak.lock())
          core->worker_down(addr, reason);
      });
      send_all(out);
    }
  }

  caf::actor spawn_worker() {
    // The core travels as a spawn argument: CAF 0.17 trips UBSan on function
    // actors spawned without any.
    auto init = [](caf::event_based_actor* self,
                   std::shared_ptr<handler_pool_core> core) {
      std::weak_ptr<handler_pool_core> weak = core;
      self->set_exception_handler(
          [weak](caf::scheduled_actor* me, std::exception_ptr& eptr) {
            std::string what = "unknown exception";
            try {
              std::rethrow_exception(eptr);
            } catch (const std::exception& e) {
              what = e.what();
            } catch (...) {
            }
            if (auto core = weak.lock())
              core->crashing(me->address());
            return caf::make_error(caf::sec::runtime_error,
                                   "handler_pool: worker crashed: " + what);
          });
      // The pool retires a worker with an exit message from its address;
      // any other one (the runtime's shutdown) closes the pool, and the
      // worker stops once the queued jobs are answered.
      auto pool = core->self_ ? core->self_->address() : caf::actor_addr{};
      self->set_exit_handler(
          [weak, pool](caf::scheduled_actor* me, caf::exit_msg& em) {
            if (em.source == pool) {
              me->quit(em.reason);
              return;
            }
            if (auto c = weak.lock())
              c->close_by_exit();
          });
      return core->make_worker_(self);
    };
    if (threads_ == worker_threads::own)
      return sys_.spawn<caf::detached>(init, self_ptr());
    return sys_.spawn(init, self_ptr());
  }

  /// Worker `who` threw: the error reply to its job that follows is a crash.
  void crashing(const caf::actor_addr& who) {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& s : slots_)
      if (s.worker.address() == who)
        s.crashed = true;
  }

  /// Marks idle workers that are surplus, or all idle ones once the pool
  /// closed and nothing is queued, as retiring.
  void retire_idle_locked(std::vector<caf::actor>& stop) {
    auto active = active_locked();
    for (auto& s : slots_) {
      if (s.retiring || s.busy != 0)
        continue;
      if (active > target_ || (closed_ && queue_.empty())) {
        s.retiring = true;
        stop.push_back(s.worker);
        --active;
      }
    }
  }

  void retire_one(const caf::actor& w) {
    auto addr = self_ ? self_->address() : caf::actor_addr{};
    w->enqueue(
        nullptr, caf::make_message_id(),
        caf::make_message(caf::exit_msg{addr, caf::exit_reason::user_shutdown}),
        nullptr);
  }

  void retire(std::vector<caf::actor>& ws) {
    for (auto& w : ws)
      retire_one(w);
    ws.clear();
  }

  /// Hands queued jobs to idle workers; the caller sends them after
  /// releasing the lock.
  void dispatch_locked(std::vector<dispatch>& out) {
    for (auto& s : slots_) {
      if (queue_.empty())
        return;
      if (s.busy != 0 || s.retiring)
        continue;
      s.held = std::static_pointer_cast<job>(std::move(queue_.front()));
      queue_.pop_front();
      s.held->deadline.reset();
      ++s.held->runs;
      s.busy = next_id_++ & caf::message_id::request_id_mask;
      out.push_back(dispatch{s.worker, s.busy, s.held->content()});
    }
  }

  void send_all(std::vector<dispatch>& out) {
    for (auto& d : out)
      d.worker->enqueue(self_, caf::make_message_id(d.id), std::move(d.content),
                        nullptr);
  }

  std::size_t active_locked() const {
    return static_cast<std::size_t>(
        std::count_if(slots_.begin(), slots_.end(),
                      [](const slot& s) { return !s.retiring; }));
  }

  worker_factory make_worker_;
  worker_threads threads_;
  caf::strong_actor_ptr self_;
  std::vector<slot> slots_;
  uint64_t next_id_ = 1;
};

} // namespace detail

handler_pool::handler_pool(caf::actor_system& sys, runtime::runtime* rt,
                           worker_factory make_worker, const pool_config& cfg,
                           worker_threads threads)
    : callers_(sys) {
  if (auto why = detail::check(make_worker, cfg))
    throw std::invalid_argument(*why);
  auto core = std::make_shared<detail::handler_pool_core>(
      sys, rt, std::move(make_worker), cfg, threads);
  core->start();
  core_ = std::move(core);
}

handler_pool::handler_pool(caf::actor_system& sys, worker_factory make_worker,
                           pool_config cfg, worker_threads threads)
    : handler_pool(sys, nullptr, std::move(make_worker), cfg, threads) {}

handler_pool::handler_pool(runtime::runtime& rt, worker_factory make_worker,
                           pool_config cfg, worker_threads threads)
    : handler_pool(rt.system(), &rt, std::move(make_worker), cfg, threads) {}

caf::expected<std::unique_ptr<handler_pool>>
handler_pool::make(caf::actor_system& sys, worker_factory make_worker,
                   pool_config cfg, worker_threads threads) {
  auto why = detail::check(make_worker, cfg);
  return detail::make_checked<handler_pool>(
      std::move(why), sys, std::move(make_worker), cfg, threads);
}

caf::expected<std::unique_ptr<handler_pool>>
handler_pool::make(runtime::runtime& rt, worker_factory make_worker,
                   pool_config cfg, worker_threads threads) {
  auto why = detail::check(make_worker, cfg);
  return detail::make_checked<handler_pool>(
      std::move(why), rt, std::move(make_worker), cfg, threads);
}

handler_pool::~handler_pool() {
  if (!core_)
    return;
  core_->shutdown_default();
  static_cast<detail::handler_pool_core&>(*core_).close_address();
}

caf::actor handler_pool::handle() const {
  return static_cast<detail::handler_pool_core&>(*core_).handle();
}

} // namespace actorbus::actors
