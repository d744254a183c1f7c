// Handler supervision: the handler actors run tasks under an
// `actors::supervisor`; deaths, restarts and completions reach the reading
// thread through `collect`.

#include "worker_impl.hpp"

namespace actorbus::queue {

void worker::impl::run_batch(const job_batch& xs, caf::actor_id actor) {
  for (auto& j : *xs)
    run_job(j);
  bool mine = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    mine = baton_out_ && baton_holder_ == actor && calm();
    baton_busy_ = mine;
    if (!mine) {
      if (baton_holder_ == actor)
        baton_out_ = false;
      done_.insert(done_.end(), xs->begin(), xs->end());
    }
  }
  if (mine)
    run_solo(xs);
  else
    cv_.notify_one(); // Only the reading thread waits on `cv`.
}

void worker::impl::run_job(const job_ptr& j) {
  int64_t waiting = 0;
  if (!j->begun_ns.compare_exchange_strong(waiting, internal::steady_ns(),
                                           std::memory_order_acq_rel))
    return; // Withdrawn (and handed back) by the reading thread.
  auto it = handlers_.find(j->name);
  caf::expected<std::string> res{std::string{}};
  task_context ctx{j->id, j->attempt, j->key};
  try {
    res = it->second(ctx, j->payload);
  } catch (const std::exception& e) {
    res = make_error(errc::handler_failed,
                     std::string{"handler threw: "} + e.what());
  } catch (...) {
    res = make_error(errc::handler_failed, "handler threw");
  }
  if (res) {
    j->kind = "ok";
    j->text = std::move(*res);
    j->effects = ctx.effects();
  } else {
    fail(*j, describe(res.error()), permanent(res.error()));
  }
}

bool worker::impl::permanent(const caf::error& err) {
  return err == caf::sec::invalid_argument || err == errc::malformed_payload;
}

void worker::impl::fail(job& j, std::string reason, bool permanent) {
  if (permanent || j.attempt >= j.max_attempts) {
    j.kind = "dead";
    j.text = permanent ? std::move(reason)
                       : fmt::format("failed {} attempt(s); last error: {}",
                                     j.attempt, reason);
    return;
  }
  j.kind = "retry";
  j.text = std::move(reason);
  j.delay_ms = internal::to_ms(j.backoff.random_delay(j.attempt - 1));
}

caf::behavior worker::impl::handler_actor(caf::event_based_actor* actor,
                                          std::shared_ptr<impl> self) {
  return {[self, id = actor->id()](job_batch& xs) { self->run_batch(xs, id); }};
}

caf::expected<caf::actor>
worker::impl::start_handler(caf::actor_system& sys,
                            const std::weak_ptr<impl>& weak, size_t idx) {
  auto self = weak.lock();
  if (!self)
    return make_error(errc::stopped, "the worker is gone");
  auto hdl = sys.spawn<caf::detached>(handler_actor, self);
  hdl->attach_functor([weak, idx, id = hdl.id()](const caf::error&) {
    if (auto s = weak.lock()) {
      bool news = false;
      {
        std::lock_guard<std::mutex> guard{s->mtx_};
        // It ran its last handler: the loop is the reading thread's again.
        if (s->baton_out_ && s->baton_holder_ == id) {
          s->baton_out_ = false;
          s->baton_busy_ = false;
          news = true;
        }
        if (!s->stopping_) {
          s->died_.emplace_back(idx, id);
          news = true;
        }
      }
      if (news)
        s->cv_.notify_all();
    }
  });
  {
    std::lock_guard<std::mutex> guard{self->mtx_};
    self->fresh_.emplace_back(idx, hdl);
  }
  self->cv_.notify_all();
  return hdl;
}

caf::error worker::impl::spawn_pool() {
  std::weak_ptr<impl> weak = shared_from_this();
  actors::supervisor_config sc;
  sc.strategy = actors::restart_strategy::one_for_one;
  sc.max_restarts = cfg_.handler_max_restarts;
  sc.period = cfg_.handler_restart_period;
  const auto& b = cfg_.handler_restart_backoff;
  sc.backoff.min = b.min;
  sc.backoff.max = b.max;
  sc.backoff.multiplier = b.multiplier;
  sc.backoff.jitter = b.jitter;
  sc.backoff.reset_after = b.reset_after;
  for (size_t i = 0; i < cfg_.concurrency; ++i) {
    actors::child_spec child;
    child.id = fmt::format("handler-{}", i);
    child.shutdown_timeout = std::chrono::seconds{1};
    child.start = [weak, i](caf::actor_system& sys) {
      return start_handler(sys, weak, i);
    };
    sc.children.push_back(std::move(child));
  }
  pool_.assign(cfg_.concurrency, caf::actor{});
  outstanding_.assign(cfg_.concurrency, 0);
  auto sup = actors::spawn_supervisor(rt_.system(), std::move(sc));
  if (!sup)
    return std::move(sup.error());
  supervisor_ = std::move(*sup);
  caf::actor_cast<caf::abstract_actor*>(supervisor_)
      ->attach_functor([weak](const caf::error& reason) {
        if (auto s = weak.lock()) {
          {
            std::lock_guard<std::mutex> guard{s->mtx_};
            if (s->stopping_)
              return;
            s->gave_up_ = true;
          }
          runtime::log(runtime::log_level::error,
                       "queue worker: handler supervisor gave up ({}); "
                       "taking no more tasks",
                       describe(reason));
          s->cv_.notify_all();
        }
      });
  return caf::none;
}

void worker::impl::collect(bool& stop_now, bool& pool_gone) {
  std::vector<job_ptr> finished;
  std::vector<std::pair<size_t, caf::actor_id>> deaths;
  std::vector<std::pair<size_t, caf::actor>> started;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    finished.swap(done_);
    deaths.swap(died_);
    started.swap(fresh_);
    stop_now = stopping_;
    pool_gone = gave_up_;
  }
  for (auto& j : finished) {
    if (j->actor < outstanding_.size() && outstanding_[j->actor] > 0)
      --outstanding_[j->actor];
    if (j->abandoned)
      continue;
    inflight_.erase(j->entry);
    to_finish_.push_back(j);
  }
  // Starts first: an actor may have started and died since the last
  // look, and its successor may be there already; deaths name the actor.
  for (auto& [idx, hdl] : started) {
    pool_[idx] = std::move(hdl);
    outstanding_[idx] = 0;
  }
  for (auto [idx, id] : deaths) {
    ++restarts_;
    runtime::log(runtime::log_level::warning,
                 "queue worker: handler actor {} died{}", idx,
                 pool_gone ? "" : "; the supervisor restarts it");
    if (idx < pool_.size() && pool_[idx] && pool_[idx].id() == id) {
      pool_[idx] = nullptr;
      outstanding_[idx] = 0;
    }
    abandon(id, "handler actor died");
  }
  if (pool_gone) {
    if (!gave_up_flag_.exchange(true)) {
      std::fill(pool_.begin(), pool_.end(), caf::actor{});
      abandon(0, "handler pool gave up");
    }
    // Nothing is read after giving up; what was, went back (abandon).
    to_run_.clear();
  }
  // A task's time counts from its start, not from when it was handed to
  // a handler actor busy with others.
  auto now = internal::steady_ns();
  for (auto& [entry, j] : inflight_) {
    auto begun = j->begun_ns.load(std::memory_order_acquire);
    if (!j->abandoned && j->timeout_ms > 0 && begun > 0 &&
        now - begun > j->timeout_ms * 1'000'000)
      give_up_on(*j, fmt::format("timed out after {} ms", j->timeout_ms));
  }
  for (auto& j : to_finish_)
    inflight_.erase(j->entry);
  if (!finished.empty() || !deaths.empty() || pool_gone)
    update_leases();
  if (!started.empty())
    dispatch();
}

void worker::impl::abandon(caf::actor_id id, const char* reason) {
  std::vector<job_ptr> unstarted;
  for (auto& [entry, j] : inflight_) {
    if ((id != 0 && j->actor_id != id) || j->abandoned)
      continue;
    if (j->begun_ns.load(std::memory_order_acquire) != 0)
      give_up_on(*j, reason);
    else
      unstarted.push_back(j);
  }
  for (auto& j : unstarted)
    inflight_.erase(j->entry);
  // Fresh jobs (the old ones stay with the dead actor), in the order they
  // were read, ahead of anything read since.
  sort_by_entry(unstarted);
  for (auto& j : unstarted)
    j = fresh_copy(*j);
  to_run_.insert(to_run_.begin(), unstarted.begin(), unstarted.end());
  if (id == 0)
    hand_back_to_run(reason);
}

} // namespace actorbus::queue
