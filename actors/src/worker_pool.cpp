#include "actorbus/actors/worker_pool.hpp"

#include "actorbus/runtime/runtime.hpp"

#include "pool_core.hpp"

#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/spawn_options.hpp>
#include <caf/system_messages.hpp>

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
constexpr nudge_atom nudge_v{};

wait_stripe stripes[64];

std::optional<std::string> check_tuning(const worker_tuning& t) {
  if (t.batch < 1)
    return "worker_pool.batch: must be at least 1";
  if (t.idle_spin.count() < 0)
    return "worker_pool.idle_spin: must not be negative";
  return std::nullopt;
}

std::optional<std::string> check(const pool_config& cfg,
                                 const worker_tuning& t) {
  if (auto why = check_config("worker_pool", cfg))
    return why;
  return check_tuning(t);
}

} // namespace

wait_stripe& stripe_for(const void* addr) noexcept {
  auto h = reinterpret_cast<std::uintptr_t>(addr) >> 4;
  return stripes[(h ^ (h >> 6)) % std::size(stripes)];
}

/// Workers pull tasks from the core's queue; an idle worker parks in
/// `idle_` until a push nudges it.
class worker_pool_core final : public pool_core {
public:
  worker_pool_core(caf::actor_system& sys, runtime::runtime* rt,
                   const pool_config& cfg, const worker_tuning& tuning)
      : pool_core("worker_pool", sys, rt, cfg)
      , tuning_(tuning) {}

  void start() {
    rebalance();
  }

  // -- submitting ------------------------------------------------------------

  void push_one(task_ptr task) {
    caf::actor wake;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (open_with_room_locked()) {
        queue_.push_back(std::move(task));
        pushes_.fetch_add(1, std::memory_order_release);
        if (!idle_.empty()) {
          wake = std::move(idle_.back());
          idle_.pop_back();
        }
      }
    }
    if (wake)
      caf::anon_send(wake, nudge_v);
    if (task) {
      // Closed or full: the overload policy decides.
      std::vector<item_ptr> one;
      one.push_back(std::move(task));
      push(one);
    }
  }

  void push(std::vector<item_ptr>& xs) {
    std::vector<caf::actor> wake;
    std::vector<item_ptr> evicted;
    std::vector<std::pair<item_ptr, caf::error>> refused;
    {
      std::unique_lock<std::mutex> guard{mtx_};
      auto deadline = std::chrono::steady_clock::now() + cfg_.block_timeout;
      bool queued = false;
      for (std::size_t k = 0; k < xs.size();) {
        // As many as fit go in at once; one wake-up signal for all.
        auto fit = room_locked(xs.size() - k);
        if (fit > 0) {
          for (std::size_t i = 0; i < fit; ++i)
            queue_.push_back(std::move(xs[k++]));
          queued = true;
          continue;
        }
        // Closed or full: the overload policy decides for this one.
        auto& x = xs[k++];
        for (;;) {
          item_ptr out;
          caf::error err;
          auto verdict = admit_locked(x, err, out);
          if (out)
            evicted.push_back(std::move(out));
          if (verdict == admission::queued) {
            queued = true;
            break;
          }
          if (verdict == admission::refused) {
            refused.emplace_back(std::move(x), std::move(err));
            break;
          }
          // Full under `block`: let the idle workers start, then wait.
          if (queued)
            pushes_.fetch_add(1, std::memory_order_release);
          queued = false;
          wake_idle_locked(wake);
          if (!wake.empty()) {
            guard.unlock();
            nudge(wake);
            guard.lock();
          }
          if (!room_cv_.wait_until(
                  guard, deadline,
                  [this] { return room_or_closed_locked(); }) &&
              !room_or_closed_locked()) {
            refused.emplace_back(std::move(x), no_room_in_time());
            break;
          }
        }
      }
      if (queued)
        pushes_.fetch_add(1, std::memory_order_release);
      wake_idle_locked(wake);
    }
    nudge(wake);
    for (auto& x : evicted)
      x->fail(dropped_for_newer());
    for (auto& [x, err] : refused)
      x->fail(std::move(err));
  }

protected:
  std::pair<std::size_t, caf::actor> census_locked() const override {
    if (workers_.empty())
      return {0, caf::actor{}};
    return {workers_.size(), workers_.front()};
  }

  /// Spawns missing workers and nudges the idle ones, which leave when
  /// surplus or when the pool closed and the queue is empty.
  void rebalance() override {
    std::vector<caf::actor> wake;
    std::size_t missing = 0;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      missing = missing_locked(workers_.size(), false);
      // Idle workers check whether they are surplus, or the pool closed,
      // when nudged.
      wake.swap(idle_);
    }
    nudge(wake);
    for (std::size_t k = 0; k < missing; ++k)
      spawn_worker();
  }

private:
  caf::error dropped_for_newer() const {
    return caf::make_error(caf::sec::unavailable_or_would_block,
                           "worker_pool: dropped for a newer task, the queue "
                           "was full (drop_oldest)");
  }

  static void nudge(std::vector<caf::actor>& ws) {
    for (auto& w : ws)
      caf::anon_send(w, nudge_v);
    ws.clear();
  }

  void wake_idle_locked(std::vector<caf::actor>& wake) {
    // One idle worker per queued task is enough; they pull from the queue.
    while (!idle_.empty() && wake.size() < queue_.size()) {
      wake.push_back(std::move(idle_.back()));
      idle_.pop_back();
    }
  }

  static void remove_locked(std::vector<caf::actor>& xs,
                            const caf::actor_addr& who) {
    auto i = std::find_if(xs.begin(), xs.end(), [&](const caf::actor& x) {
      return x.address() == who;
    });
    if (i != xs.end())
      xs.erase(i);
  }

  // -- workers ---------------------------------------------------------------

  void spawn_worker() {
    auto self = std::static_pointer_cast<worker_pool_core>(shared_from_this());
    // The core travels as a spawn argument: CAF 0.17 trips UBSan on function
    // actors spawned without any.
    auto w = sys_.spawn<caf::detached>(
        [](caf::event_based_actor* me, std::shared_ptr<worker_pool_core> core) {
          std::weak_ptr<worker_pool_core> weak = core;
          // An exit message comes from outside (the runtime's shutdown):
          // the pool closes, and this worker leaves once the queue is empty.
          me->set_exit_handler([weak](caf::scheduled_actor*, caf::exit_msg&) {
            if (auto c = weak.lock())
              c->close_by_exit();
          });
          return caf::behavior{
              [core, me](nudge_atom) { core->drain(me); },
          };
        },
        self);
    track(w);
    {
      std::lock_guard<std::mutex> guard{mtx_};
      started_locked();
      workers_.push_back(w);
    }
    state_cv_.notify_all();
    std::weak_ptr<worker_pool_core> weak = self;
    // Runs at once when `w` is already gone.
    w->attach_functor([weak, addr = w.address()](const caf::error&) {
      if (auto core = weak.lock())
        core->worker_gone(addr);
    });
    caf::anon_send(w, nudge_v);
  }

  /// Worker `who` ended: by itself (it left `workers_` then), by a crash
  /// (likewise) or killed from outside. Spawns replacements.
  void worker_gone(const caf::actor_addr& who) {
    std::size_t missing = 0;
    std::vector<item_ptr> stranded;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto before = workers_.size();
      remove_locked(workers_, who);
      remove_locked(idle_, who);
      if (workers_.size() < before)
        ++crashes_; // killed from outside
      missing = missing_locked(workers_.size(), true);
      stranded = stranded_locked();
    }
    state_cv_.notify_all();
    fail_all(stranded, closed_error());
    for (std::size_t k = 0; k < missing; ++k)
      spawn_worker();
  }

  /// Ends worker `me` of its own accord (no replacement).
  void leave_locked(caf::event_based_actor* me) {
    remove_locked(workers_, me->address());
    state_cv_.notify_all();
    me->quit();
  }

  /// Runs tasks until the queue is empty; then parks `me` as idle, or ends
  /// it when the pool is closing or has too many workers.
  void drain(caf::event_based_actor* me) {
    std::vector<task_ptr> batch;
    std::vector<item_ptr> stranded;
    bool spun = false;
    for (;;) {
      batch.clear();
      {
        std::unique_lock<std::mutex> guard{mtx_};
        if (workers_.size() > target_ && !closed_) {
          leave_locked(me);
          return;
        }
        if (cancel_at_)
          stranded = stranded_locked();
        if (queue_.empty()) {
          if (closed_) {
            leave_locked(me);
            guard.unlock();
            fail_all(stranded, closed_error());
            return;
          }
          if (!spun && tuning_.idle_spin.count() > 0) {
            // Stay awake briefly: under a steady stream of tasks this saves
            // a park and a wake-up message per task.
            spun = true;
            auto seen = pushes_.load(std::memory_order_relaxed);
            guard.unlock();
            auto until = std::chrono::steady_clock::now() + tuning_.idle_spin;
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
        auto n =
            std::clamp<std::size_t>(queue_.size() / live, 1, tuning_.batch);
        for (std::size_t i = 0; i < n; ++i) {
          batch.push_back(
              std::static_pointer_cast<task_base>(std::move(queue_.front())));
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
  /// the batch, and end the worker (the pool replaces it).
  void crashed(caf::event_based_actor* me, std::vector<task_ptr>& batch,
               std::size_t i, const std::string& what) {
    auto err = crash_error(what);
    item_ptr failed;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      ++crashes_;
      remove_locked(workers_, me->address());
      remove_locked(idle_, me->address());
      state_cv_.notify_all();
      for (auto k = batch.size(); k > i + 1; --k)
        queue_.push_front(std::move(batch[k - 1]));
      item_ptr x = std::move(batch[i]);
      if (!requeue_locked(x))
        failed = std::move(x);
    }
    completed_.fetch_add(i + (failed ? 1 : 0), std::memory_order_relaxed);
    if (failed)
      failed->fail(err);
    me->quit(std::move(err));
  }

  worker_tuning tuning_;
  std::vector<caf::actor> idle_;
  std::vector<caf::actor> workers_;
  std::atomic<std::size_t> pushes_{0};
};

} // namespace detail

namespace {

std::shared_ptr<detail::worker_pool_core>
start_core(caf::actor_system& sys, runtime::runtime* rt, const pool_config& cfg,
           const worker_tuning& tuning) {
  if (auto why = detail::check(cfg, tuning))
    throw std::invalid_argument(*why);
  auto core = std::make_shared<detail::worker_pool_core>(sys, rt, cfg, tuning);
  core->start();
  return core;
}

} // namespace

worker_pool::worker_pool(caf::actor_system& sys, pool_config cfg,
                         worker_tuning tuning) {
  core_ = start_core(sys, nullptr, cfg, tuning);
}

worker_pool::worker_pool(runtime::runtime& rt, pool_config cfg,
                         worker_tuning tuning) {
  core_ = start_core(rt.system(), &rt, cfg, tuning);
}

caf::expected<std::unique_ptr<worker_pool>>
worker_pool::make(caf::actor_system& sys, pool_config cfg,
                  worker_tuning tuning) {
  return detail::make_checked<worker_pool>(detail::check(cfg, tuning), sys, cfg,
                                           tuning);
}

caf::expected<std::unique_ptr<worker_pool>>
worker_pool::make(runtime::runtime& rt, pool_config cfg, worker_tuning tuning) {
  return detail::make_checked<worker_pool>(detail::check(cfg, tuning), rt, cfg,
                                           tuning);
}

worker_pool::~worker_pool() = default;

void worker_pool::push_one(detail::task_ptr task) {
  static_cast<detail::worker_pool_core&>(*core_).push_one(std::move(task));
}

void worker_pool::push_many(std::vector<detail::task_ptr>& tasks) {
  std::vector<detail::item_ptr> xs(std::make_move_iterator(tasks.begin()),
                                   std::make_move_iterator(tasks.end()));
  static_cast<detail::worker_pool_core&>(*core_).push(xs);
}

} // namespace actorbus::actors
