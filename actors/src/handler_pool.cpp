#include "actorbus/actors/handler_pool.hpp"

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
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace actorbus::actors {

namespace detail {

namespace {

// Sent by the actor clock to the pool when a blocked job's wait may be over.
using overflow_check_atom = caf::atom_constant<caf::atom("abHpTick")>;

/// A message sent to the pool, waiting for or held by a worker.
struct job {
  caf::strong_actor_ptr sender;
  caf::message_id mid;
  caf::mailbox_element::forwarding_stack stages;
  caf::message content;
  std::size_t runs = 0;
  /// Set while the job waits beyond the queue's capacity.
  std::optional<caf::actor_clock::time_point> deadline;
};

/// One worker and the job it holds.
struct slot {
  caf::actor worker;
  /// Request id of the job sent to the worker; 0 while idle.
  uint64_t busy = 0;
  std::optional<job> held;
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

/// A reply to deliver once the lock is released.
struct answer {
  job to;
  caf::message content;
};

caf::error validate(const worker_factory& make_worker, const pool_config& cfg) {
  auto bad = [](const char* why) {
    return caf::make_error(caf::sec::invalid_argument, why);
  };
  if (!make_worker)
    return bad("handler_pool: no worker factory");
  if (cfg.workers < 1)
    return bad("handler_pool: at least one worker");
  if (cfg.max_task_attempts < 1)
    return bad("handler_pool: max_task_attempts must be at least 1");
  return caf::error{};
}

} // namespace

class handler_pool_core
    : public std::enable_shared_from_this<handler_pool_core> {
public:
  handler_pool_core(caf::actor_system& sys, worker_factory make_worker,
                    pool_config cfg, worker_threads threads)
      : sys_(sys)
      , make_worker_(std::move(make_worker))
      , cfg_(cfg)
      , threads_(threads)
      , target_(cfg.workers) {}

  void start() {
    auto companion = sys_.spawn<caf::actor_companion, caf::hidden>();
    std::weak_ptr<handler_pool_core> weak = shared_from_this();
    caf::actor_cast<caf::actor_companion*>(companion)->on_enqueue(
        [weak](caf::mailbox_element_ptr ptr) {
          if (auto core = weak.lock(); core && ptr)
            core->receive(*ptr);
        });
    self_ = caf::actor_cast<caf::strong_actor_ptr>(companion);
    add_workers(cfg_.workers);
  }

  caf::actor handle() const {
    return caf::actor_cast<caf::actor>(self_);
  }

  // -- control ---------------------------------------------------------------

  caf::error resize(std::size_t n) {
    if (n < 1)
      return caf::make_error(caf::sec::invalid_argument,
                             "handler_pool: at least one worker");
    std::vector<caf::actor> stop;
    std::size_t grow = 0;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (closed_)
        return caf::make_error(caf::sec::request_receiver_down,
                               "handler_pool: shut down");
      target_ = n;
      auto active = active_locked();
      if (active < n)
        grow = n - active;
      // Idle surplus workers stop now; busy ones after their reply.
      for (auto& s : slots_)
        if (active > n && !s.retiring && s.busy == 0) {
          s.retiring = true;
          stop.push_back(s.worker);
          --active;
        }
    }
    for (auto& w : stop)
      caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
    add_workers(grow);
    return caf::error{};
  }

  bool wait_for_workers(std::size_t n, caf::timespan timeout) {
    std::unique_lock<std::mutex> guard{mtx_};
    return state_cv_.wait_for(guard, timeout,
                              [&] { return slots_.size() == n; });
  }

  caf::error shutdown(shutdown_options opts) {
    std::vector<job> cancelled;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!closed_ && opts.cancel_pending) {
        cancelled.assign(std::make_move_iterator(queue_.begin()),
                         std::make_move_iterator(queue_.end()));
        queue_.clear();
      }
      closed_ = true;
    }
    fail_all(cancelled, caf::make_error(caf::sec::request_receiver_down,
                                        "handler_pool: job cancelled by "
                                        "shutdown"));
    caf::error result;
    if (opts.wait) {
      std::unique_lock<std::mutex> guard{mtx_};
      auto drained = state_cv_.wait_for(guard, opts.timeout, [this] {
        return queue_.empty() && busy_locked() == 0;
      });
      if (!drained) {
        cancelled.assign(std::make_move_iterator(queue_.begin()),
                         std::make_move_iterator(queue_.end()));
        queue_.clear();
        result = caf::make_error(caf::sec::request_timeout,
                                 "handler_pool: shutdown timed out");
      }
    }
    fail_all(cancelled, result);
    std::vector<caf::actor> stop;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      for (auto& s : slots_) {
        s.retiring = true;
        stop.push_back(s.worker);
      }
    }
    for (auto& w : stop)
      caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
    return result;
  }

  pool_stats stats() const {
    std::lock_guard<std::mutex> guard{mtx_};
    pool_stats s;
    s.workers = slots_.size();
    s.target = target_;
    s.queued = queue_.size();
    s.completed = completed_;
    s.crashes = crashes_;
    s.replaced = replaced_;
    s.retried = retried_;
    return s;
  }

  bool kill_one_worker() {
    caf::actor victim;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (slots_.empty())
        return false;
      victim = slots_.front().worker;
    }
    caf::anon_send_exit(victim, caf::exit_reason::kill);
    return true;
  }

  caf::timespan shutdown_timeout() const {
    return cfg_.shutdown_timeout;
  }

  /// Ends the pool's address; called once the pool object is gone.
  void close_address() {
    // Handles may outlive the pool: their requests are answered at once.
    if (auto c = caf::actor_cast<caf::actor_companion*>(self_))
      c->on_enqueue([](caf::mailbox_element_ptr ptr) {
        if (ptr && ptr->mid.is_request() && ptr->sender)
          ptr->sender->enqueue(
              nullptr, ptr->mid.response_id(),
              caf::make_message(caf::make_error(caf::sec::request_receiver_down,
                                                "handler_pool: gone")),
              nullptr);
      });
  }

private:
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
    admit(job{x.sender, x.mid, x.stages, std::move(msg), 0, std::nullopt});
  }

  void admit(job j) {
    std::vector<dispatch> out;
    std::optional<caf::error> refused;
    std::optional<caf::actor_clock::time_point> check_at;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (closed_) {
        refused = caf::make_error(caf::sec::request_receiver_down,
                                  "handler_pool: shut down");
      } else if (cfg_.queue_capacity > 0 &&
                 queue_.size() >= cfg_.queue_capacity) {
        if (cfg_.on_full == overflow_policy::reject) {
          refused = caf::make_error(caf::sec::unavailable_or_would_block,
                                    "handler_pool: queue full");
        } else {
          j.deadline = sys_.clock().now() + cfg_.block_timeout;
          check_at = j.deadline;
          queue_.push_back(std::move(j));
        }
      } else {
        queue_.push_back(std::move(j));
        dispatch_locked(out);
      }
    }
    if (refused)
      respond(j, caf::make_message(std::move(*refused)));
    if (check_at)
      sys_.clock().schedule_message(
          *check_at, self_,
          caf::make_mailbox_element(nullptr, caf::make_message_id(), {},
                                    overflow_check_atom::value));
    send_all(out);
  }

  /// A worker answered a job, or the job bounced off a worker that died
  /// (CAF answers such a request anonymously with an error).
  void reply(caf::message_id mid, bool anonymous, caf::message msg) {
    auto id = mid.request_id().integer_value();
    bool failed = msg.match_elements<caf::error>();
    std::optional<answer> done;
    std::vector<dispatch> out;
    caf::actor stop;
    std::size_t grow = 0;
    bool bounced = false;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto i = std::find_if(slots_.begin(), slots_.end(),
                            [id](const slot& s) { return s.busy == id; });
      if (i == slots_.end())
        return; // its worker was handled as lost already
      bounced = failed && (anonymous || i->crashed);
      if (bounced) {
        stop = i->worker;
        grow = lost_locked(i, msg.get_as<caf::error>(0), done);
      } else {
        ++completed_;
        done.emplace(answer{std::move(*i->held), std::move(msg)});
        i->held.reset();
        i->busy = 0;
        if (!i->retiring && active_locked() > target_) {
          i->retiring = true;
          stop = i->worker;
        }
      }
      dispatch_locked(out);
      state_cv_.notify_all();
    }
    if (done)
      respond(done->to, std::move(done->content));
    if (stop)
      caf::anon_send_exit(stop, bounced ? caf::exit_reason::kill
                                        : caf::exit_reason::user_shutdown);
    add_workers(grow);
    send_all(out);
  }

  /// Worker `who` exited with `reason`.
  void worker_down(const caf::actor_addr& who, const caf::error& reason) {
    std::optional<answer> failed;
    std::vector<dispatch> out;
    std::size_t grow = 0;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto i = std::find_if(slots_.begin(), slots_.end(), [&](const slot& s) {
        return s.worker.address() == who;
      });
      if (i == slots_.end())
        return;
      grow = lost_locked(i, reason, failed);
      dispatch_locked(out);
      state_cv_.notify_all();
    }
    if (failed)
      respond(failed->to, std::move(failed->content));
    add_workers(grow);
    send_all(out);
  }

  /// Removes the slot of a dead worker, retries or fails its job, and
  /// returns how many workers to spawn in its place.
  std::size_t lost_locked(std::vector<slot>::iterator i,
                          const caf::error& reason,
                          std::optional<answer>& failed) {
    bool expected = i->retiring;
    std::optional<job> held = std::move(i->held);
    slots_.erase(i);
    if (!expected)
      ++crashes_;
    if (held) {
      if (!closed_ && cfg_.on_crash == crash_policy::retry &&
          held->runs < cfg_.max_task_attempts) {
        ++retried_;
        held->deadline.reset();
        queue_.push_front(std::move(*held));
      } else {
        auto err = caf::make_error(caf::sec::runtime_error,
                                   "handler_pool: worker died in a job: " +
                                       caf::to_string(reason));
        failed.emplace(answer{std::move(*held), caf::make_message(err)});
      }
    }
    if (closed_ || expected)
      return 0;
    auto active = active_locked();
    auto grow = active < target_ ? target_ - active : 0;
    replaced_ += grow;
    return grow;
  }

  void expire_overflow() {
    std::vector<job> late;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto now = sys_.clock().now();
      auto keep = std::min(cfg_.queue_capacity, queue_.size());
      for (auto i = queue_.begin() + static_cast<std::ptrdiff_t>(keep);
           i != queue_.end();) {
        if (i->deadline && *i->deadline <= now) {
          late.push_back(std::move(*i));
          i = queue_.erase(i);
        } else {
          ++i;
        }
      }
      state_cv_.notify_all();
    }
    fail_all(late, caf::make_error(caf::sec::request_timeout,
                                   "handler_pool: no room in the queue in "
                                   "time"));
  }

  // -- workers ---------------------------------------------------------------

  void add_workers(std::size_t n) {
    for (std::size_t k = 0; k < n; ++k) {
      auto w = spawn_worker();
      std::vector<dispatch> out;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        if (closed_) {
          caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
          return;
        }
        slots_.push_back(slot{w, 0, std::nullopt, false, false});
        dispatch_locked(out);
        state_cv_.notify_all();
      }
      std::weak_ptr<handler_pool_core> weak = shared_from_this();
      // Runs at once when `w` is already dead.
      w->attach_functor([weak, addr = w.address()](const caf::error& reason) {
        if (auto core = weak.lock())
          core->worker_down(addr, reason);
      });
      send_all(out);
    }
  }

  caf::actor spawn_worker() {
    // The behavior factory travels as a spawn argument: CAF 0.17 trips
    // UBSan on function actors spawned without any.
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
      return core->make_worker_(self);
    };
    if (threads_ == worker_threads::own)
      return sys_.spawn<caf::detached>(init, shared_from_this());
    return sys_.spawn(init, shared_from_this());
  }

  /// Worker `who` threw: the error reply to its job that follows is a crash.
  void crashing(const caf::actor_addr& who) {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& s : slots_)
      if (s.worker.address() == who)
        s.crashed = true;
  }

  /// Hands queued jobs to idle workers; the caller sends them after
  /// releasing the lock.
  void dispatch_locked(std::vector<dispatch>& out) {
    for (auto& s : slots_) {
      if (queue_.empty())
        return;
      if (s.busy != 0 || s.retiring)
        continue;
      s.held.emplace(std::move(queue_.front()));
      queue_.pop_front();
      s.held->deadline.reset();
      ++s.held->runs;
      s.busy = next_id_++ & caf::message_id::request_id_mask;
      out.push_back(dispatch{s.worker, s.busy, s.held->content});
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

  std::size_t busy_locked() const {
    return static_cast<std::size_t>(
        std::count_if(slots_.begin(), slots_.end(),
                      [](const slot& s) { return s.busy != 0; }));
  }

  // -- answers ---------------------------------------------------------------

  /// Sends `content` as the reply to `j` (nothing for a job sent without
  /// `request`).
  void respond(job& j, caf::message content) {
    if (!j.mid.is_request())
      return;
    auto dest = j.sender;
    if (!j.stages.empty()) {
      dest = std::move(j.stages.back());
      j.stages.pop_back();
    }
    if (!dest)
      return;
    dest->enqueue(caf::make_mailbox_element(self_, j.mid.response_id(),
                                            std::move(j.stages),
                                            std::move(content)),
                  nullptr);
  }

  void fail_all(std::vector<job>& js, const caf::error& err) {
    for (auto& j : js)
      respond(j, caf::make_message(err));
    js.clear();
  }

  caf::actor_system& sys_;
  worker_factory make_worker_;
  pool_config cfg_;
  worker_threads threads_;
  caf::strong_actor_ptr self_;

  mutable std::mutex mtx_;
  std::condition_variable state_cv_;
  std::deque<job> queue_;
  std::vector<slot> slots_;
  std::size_t target_;
  bool closed_ = false;
  uint64_t next_id_ = 1;
  std::size_t completed_ = 0;
  std::size_t crashes_ = 0;
  std::size_t replaced_ = 0;
  std::size_t retried_ = 0;
};

} // namespace detail

handler_pool::handler_pool(caf::actor_system& sys, worker_factory make_worker,
                           pool_config cfg, worker_threads threads)
    : callers_(sys) {
  if (auto err = detail::validate(make_worker, cfg))
    throw std::invalid_argument(caf::to_string(err));
  core_ = std::make_shared<detail::handler_pool_core>(
      sys, std::move(make_worker), cfg, threads);
  core_->start();
}

caf::expected<std::unique_ptr<handler_pool>>
handler_pool::make(caf::actor_system& sys, worker_factory make_worker,
                   pool_config cfg, worker_threads threads) {
  if (auto err = detail::validate(make_worker, cfg))
    return err;
  return std::make_unique<handler_pool>(sys, std::move(make_worker), cfg,
                                        threads);
}

handler_pool::~handler_pool() {
  if (!core_)
    return;
  shutdown_options opts;
  opts.timeout = core_->shutdown_timeout();
  core_->shutdown(opts);
  core_->close_address();
}

caf::actor handler_pool::handle() const {
  return core_->handle();
}

caf::error handler_pool::resize(std::size_t workers) {
  return core_->resize(workers);
}

bool handler_pool::wait_for_workers(std::size_t n, caf::timespan timeout) {
  return core_->wait_for_workers(n, timeout);
}

caf::error handler_pool::shutdown(shutdown_options opts) {
  return core_->shutdown(opts);
}

pool_stats handler_pool::stats() const {
  return core_->stats();
}

bool handler_pool::kill_one_worker() {
  return core_->kill_one_worker();
}

} // namespace actorbus::actors
