#include "actorbus/actors/worker_pool.hpp"

#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/spawn_options.hpp>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>

namespace actorbus::actors {

namespace detail {

namespace {

using nudge_atom = caf::atom_constant<caf::atom("abNudge")>;
using grow_atom = caf::atom_constant<caf::atom("abGrow")>;

caf::error validate(const pool_config& cfg) {
  auto bad = [](const char* why) {
    return caf::make_error(caf::sec::invalid_argument, why);
  };
  if (cfg.workers < 1)
    return bad("pool_config: at least one worker");
  if (cfg.batch < 1)
    return bad("pool_config: batch must be at least 1");
  if (cfg.max_task_attempts < 1)
    return bad("pool_config: max_task_attempts must be at least 1");
  return caf::error{};
}

wait_stripe stripes[64];

} // namespace

wait_stripe& stripe_for(const void* addr) noexcept {
  auto h = reinterpret_cast<std::uintptr_t>(addr) >> 4;
  return stripes[(h ^ (h >> 6)) % std::size(stripes)];
}

class pool_core : public std::enable_shared_from_this<pool_core> {
public:
  pool_core(caf::actor_system& sys, pool_config cfg)
      : sys_(sys)
      , cfg_(cfg)
      , target_(cfg.workers) {}

  void start() {
    auto self = shared_from_this();
    // Captures travel as spawn arguments: CAF 0.17 trips UBSan on function
    // actors spawned without any.
    supervisor_ = sys_.spawn(
        [](caf::event_based_actor* sup, std::shared_ptr<pool_core> core) {
          return supervise(core, sup);
        },
        self);
  }

  // -- submitting ------------------------------------------------------------

  void push_one(task_ptr task) {
    caf::actor wake;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!closed_ &&
          (cfg_.queue_capacity == 0 || queue_.size() < cfg_.queue_capacity)) {
        queue_.push_back(std::move(task));
        pushes_.fetch_add(1, std::memory_order_release);
        if (!idle_.empty()) {
          wake = std::move(idle_.back());
          idle_.pop_back();
        }
      }
    }
    if (wake)
      caf::anon_send(wake, nudge_atom::value);
    if (task) {
      // Closed or full: the slow path blocks or refuses.
      std::vector<task_ptr> one;
      one.push_back(std::move(task));
      push(one);
    }
  }

  caf::error shutdown_default() {
    shutdown_options opts;
    opts.timeout = cfg_.shutdown_timeout;
    return shutdown(opts);
  }

  void push(std::vector<task_ptr>& tasks) {
    if (tasks.empty())
      return;
    std::vector<caf::actor> wake;
    std::size_t taken = 0;
    {
      std::unique_lock<std::mutex> guard{mtx_};
      while (taken < tasks.size()) {
        if (closed_)
          break;
        if (cfg_.queue_capacity > 0 && queue_.size() >= cfg_.queue_capacity) {
          if (cfg_.on_full == overflow_policy::reject)
            break;
          auto has_room = [this] {
            return closed_ || queue_.size() < cfg_.queue_capacity;
          };
          if (!room_cv_.wait_for(guard, cfg_.block_timeout, has_room))
            break;
          continue;
        }
        auto room = cfg_.queue_capacity > 0
                        ? cfg_.queue_capacity - queue_.size()
                        : tasks.size() - taken;
        auto n = std::min(room, tasks.size() - taken);
        for (std::size_t i = 0; i < n; ++i)
          queue_.push_back(std::move(tasks[taken++]));
        pushes_.fetch_add(1, std::memory_order_release);
        wake_idle_locked(wake);
      }
    }
    for (auto& w : wake)
      caf::anon_send(w, nudge_atom::value);
    if (taken < tasks.size()) {
      auto err = refusal();
      for (auto i = taken; i < tasks.size(); ++i)
        tasks[i]->fail(err);
    }
  }

  // -- control ---------------------------------------------------------------

  caf::error resize(std::size_t n) {
    if (n < 1)
      return caf::make_error(caf::sec::invalid_argument,
                             "worker_pool: at least one worker");
    std::vector<caf::actor> wake;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (closed_)
        return caf::make_error(caf::sec::request_receiver_down,
                               "worker_pool: shut down");
      target_ = n;
      // Idle workers check whether they are surplus when nudged.
      wake.swap(idle_);
    }
    for (auto& w : wake)
      caf::anon_send(w, nudge_atom::value);
    caf::anon_send(supervisor_, grow_atom::value);
    return caf::error{};
  }

  bool wait_for_workers(std::size_t n, caf::timespan timeout) {
    std::unique_lock<std::mutex> guard{mtx_};
    return state_cv_.wait_for(guard, timeout,
                              [&] { return workers_.size() == n; });
  }

  caf::error shutdown(shutdown_options opts) {
    std::vector<task_ptr> cancelled;
    std::vector<caf::actor> wake;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      closed_ = true;
      if (opts.cancel_pending) {
        cancelled.assign(std::make_move_iterator(queue_.begin()),
                         std::make_move_iterator(queue_.end()));
        queue_.clear();
      }
      wake.swap(idle_);
    }
    room_cv_.notify_all();
    auto err = caf::make_error(caf::sec::request_receiver_down,
                               "worker_pool: task cancelled by shutdown");
    for (auto& t : cancelled)
      t->fail(err);
    for (auto& w : wake)
      caf::anon_send(w, nudge_atom::value);
    caf::anon_send(supervisor_, grow_atom::value);
    if (!opts.wait)
      return caf::error{};
    std::unique_lock<std::mutex> guard{mtx_};
    if (state_cv_.wait_for(guard, opts.timeout, [this] {
          return workers_.empty() && queue_.empty();
        }))
      return caf::error{};
    std::vector<task_ptr> left(std::make_move_iterator(queue_.begin()),
                               std::make_move_iterator(queue_.end()));
    queue_.clear();
    guard.unlock();
    auto late = caf::make_error(caf::sec::request_timeout,
                                "worker_pool: shutdown timed out");
    for (auto& t : left)
      t->fail(late);
    return late;
  }

  pool_stats stats() const {
    std::lock_guard<std::mutex> guard{mtx_};
    pool_stats s;
    s.workers = workers_.size();
    s.target = target_;
    s.queued = queue_.size();
    s.completed = completed_.load();
    s.crashes = crashes_;
    s.replaced = replaced_;
    s.retried = retried_;
    return s;
  }

  bool kill_one_worker() {
    caf::actor victim;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (workers_.empty())
        return false;
      victim = workers_.front();
    }
    caf::anon_send_exit(victim, caf::exit_reason::kill);
    return true;
  }

private:
  caf::error refusal() const {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_)
      return caf::make_error(caf::sec::request_receiver_down,
                             "worker_pool: shut down");
    if (cfg_.on_full == overflow_policy::reject)
      return caf::make_error(caf::sec::unavailable_or_would_block,
                             "worker_pool: queue full");
    return caf::make_error(caf::sec::request_timeout,
                           "worker_pool: no room in the queue in time");
  }

  /// Ends worker `me` of its own accord (no replacement).
  void leave_locked(caf::event_based_actor* me) {
    remove_locked(workers_, me->address());
    state_cv_.notify_all();
    me->quit();
  }

  static void remove_locked(std::vector<caf::actor>& xs,
                            const caf::actor_addr& who) {
    auto i = std::find_if(xs.begin(), xs.end(), [&](const caf::actor& x) {
      return x.address() == who;
    });
    if (i != xs.end())
      xs.erase(i);
  }

  void wake_idle_locked(std::vector<caf::actor>& wake) {
    // One idle worker per queued task is enough; they pull from the queue.
    while (!idle_.empty() && wake.size() < queue_.size()) {
      wake.push_back(std::move(idle_.back()));
      idle_.pop_back();
    }
  }

  // -- supervisor ------------------------------------------------------------

  static caf::behavior supervise(std::shared_ptr<pool_core> self,
                                 caf::event_based_actor* sup) {
    // The handlers hold the core: it lives as long as any of its actors.
    return self->supervise_impl(self, sup);
  }

  caf::behavior supervise_impl(std::shared_ptr<pool_core> self,
                               caf::event_based_actor* sup) {
    sup->set_down_handler([this, self, sup](caf::down_msg& dm) {
      std::size_t missing = 0;
      bool done = false;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        // Workers that end by themselves have left workers_ already; a
        // killed one leaves now.
        remove_locked(workers_, dm.source);
        remove_locked(idle_, dm.source);
        if (!closed_ && workers_.size() < target_) {
          missing = target_ - workers_.size();
          replaced_ += missing;
        }
        done = closed_ && workers_.empty();
      }
      for (std::size_t k = 0; k < missing; ++k)
        spawn_worker(sup);
      state_cv_.notify_all();
      if (done)
        sup->quit();
    });
    for (std::size_t k = 0; k < cfg_.workers; ++k)
      spawn_worker(sup);
    return {
        [this, self, sup](grow_atom) {
          std::size_t missing = 0;
          bool done = false;
          {
            std::lock_guard<std::mutex> guard{mtx_};
            if (!closed_ && workers_.size() < target_)
              missing = target_ - workers_.size();
            done = closed_ && workers_.empty();
          }
          for (std::size_t k = 0; k < missing; ++k)
            spawn_worker(sup);
          state_cv_.notify_all();
          if (done)
            sup->quit();
        },
    };
  }

  void spawn_worker(caf::event_based_actor* sup) {
    auto self = shared_from_this();
    auto w = sup->system().spawn<caf::detached>(
        [](caf::event_based_actor* me, std::shared_ptr<pool_core> core) {
          return work(core, me);
        },
        self);
    sup->monitor(w);
    {
      std::lock_guard<std::mutex> guard{mtx_};
      workers_.push_back(w);
    }
    state_cv_.notify_all();
    sup->send(w, nudge_atom::value);
  }

  // -- worker ----------------------------------------------------------------

  static caf::behavior work(std::shared_ptr<pool_core> self,
                            caf::event_based_actor* me) {
    // The first nudge comes from the supervisor once `me` is registered.
    return {
        [self, me](nudge_atom) { self->drain(me); },
    };
  }

  /// Runs tasks until the queue is empty; then parks `me` as idle, or ends
  /// it when the pool is closing or has too many workers.
  void drain(caf::event_based_actor* me) {
    std::vector<task_ptr> batch;
    bool spun = false;
    for (;;) {
      batch.clear();
      {
        std::unique_lock<std::mutex> guard{mtx_};
        if (workers_.size() > target_ && !closed_) {
          leave_locked(me);
          return;
        }
        if (queue_.empty()) {
          if (closed_) {
            leave_locked(me);
            return;
          }
          if (!spun && cfg_.idle_spin.count() > 0) {
            // Stay awake briefly: under a steady stream of tasks this saves
            // a park and a wake-up message per task.
            spun = true;
            auto seen = pushes_.load(std::memory_order_relaxed);
            guard.unlock();
            auto until = std::chrono::steady_clock::now() + cfg_.idle_spin;
            while (pushes_.load(std::memory_order_acquire) == seen &&
                   std::chrono::steady_clock::now() < until)
              std::this_thread::yield();
            continue;
          }
          idle_.push_back(caf::actor_cast<caf::actor>(me));
          return;
        }
        spun = false;
        // Take at most a fair share, so that work is spread over workers.
        auto live = std::max<std::size_t>(1, workers_.size());
        auto n = std::clamp<std::size_t>(queue_.size() / live, 1, cfg_.batch);
        for (std::size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      if (cfg_.queue_capacity > 0)
        room_cv_.notify_all();
      for (std::size_t i = 0; i < batch.size(); ++i) {
        auto& t = batch[i];
        ++t->runs;
        try {
          t->run();
        } catch (const std::exception& e) {
          crashed(me, batch, i, e.what());
          return;
        } catch (...) {
          crashed(me, batch, i, "unknown exception");
          return;
        }
      }
      completed_.fetch_add(batch.size(), std::memory_order_relaxed);
    }
  }

  /// Handles a task that threw: retry or fail it, hand back the rest of
  /// the batch, and end the worker (the supervisor replaces it).
  void crashed(caf::event_based_actor* me, std::vector<task_ptr>& batch,
               std::size_t i, const std::string& what) {
    auto err = caf::make_error(caf::sec::runtime_error,
                               "worker crashed in a task: " + what);
    task_ptr failed;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      ++crashes_;
      remove_locked(workers_, me->address());
      state_cv_.notify_all();
      for (auto k = batch.size(); k > i + 1; --k)
        queue_.push_front(std::move(batch[k - 1]));
      if (cfg_.on_crash == crash_policy::retry &&
          batch[i]->runs < cfg_.max_task_attempts && !closed_) {
        ++retried_;
        queue_.push_front(std::move(batch[i]));
      } else {
        failed = std::move(batch[i]);
      }
    }
    completed_.fetch_add(i + (failed ? 1 : 0), std::memory_order_relaxed);
    if (failed)
      failed->fail(err);
    me->quit(std::move(err));
  }

  caf::actor_system& sys_;
  pool_config cfg_;
  caf::actor supervisor_;

  mutable std::mutex mtx_;
  std::condition_variable room_cv_;
  std::condition_variable state_cv_;
  std::deque<task_ptr> queue_;
  std::vector<caf::actor> idle_;
  std::vector<caf::actor> workers_;
  std::size_t target_;
  bool closed_ = false;
  std::atomic<std::size_t> completed_{0};
  std::atomic<std::size_t> pushes_{0};
  std::size_t crashes_ = 0;
  std::size_t replaced_ = 0;
  std::size_t retried_ = 0;
};

} // namespace detail

worker_pool::worker_pool(caf::actor_system& sys, pool_config cfg) {
  if (auto err = detail::validate(cfg))
    throw std::invalid_argument(caf::to_string(err));
  core_ = std::make_shared<detail::pool_core>(sys, cfg);
  core_->start();
}

caf::expected<std::unique_ptr<worker_pool>>
worker_pool::make(caf::actor_system& sys, pool_config cfg) {
  if (auto err = detail::validate(cfg))
    return err;
  return std::make_unique<worker_pool>(sys, cfg);
}

worker_pool::~worker_pool() {
  if (core_)
    core_->shutdown_default();
}

void worker_pool::push_one(detail::task_ptr task) {
  core_->push_one(std::move(task));
}

void worker_pool::push_many(std::vector<detail::task_ptr>& tasks) {
  core_->push(tasks);
}

caf::error worker_pool::resize(std::size_t workers) {
  return core_->resize(workers);
}

bool worker_pool::wait_for_workers(std::size_t n, caf::timespan timeout) {
  return core_->wait_for_workers(n, timeout);
}

caf::error worker_pool::shutdown(shutdown_options opts) {
  return core_->shutdown(opts);
}

pool_stats worker_pool::stats() const {
  return core_->stats();
}

bool worker_pool::kill_one_worker() {
  return core_->kill_one_worker();
}

} // namespace actorbus::actors
