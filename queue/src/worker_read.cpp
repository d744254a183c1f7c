// The reader loop: reads tasks, hands them to handler actors, waits for
// completions; and the one-task-at-a-time mode that passes the loop to
// the handler actor (the baton).

#include "worker_impl.hpp"

namespace actorbus::queue {

void worker::impl::call_hook(fault_point p) {
  if (hook_)
    hook_(p);
}

void worker::impl::accept(int stream, const redisReply* e,
                          uint64_t deliveries) {
  if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
    return;
  auto j = std::make_shared<job>();
  j->entry = std::string{internal::str(e->element[0])};
  j->stream = stream;
  auto* f = e->element[1];
  if (f->type != REDIS_REPLY_ARRAY) {
    // Deleted while pending (Redis 6.2 XAUTOCLAIM): just acknowledge.
    j->kind = "dead";
    j->id = "entry-" + j->entry;
    j->text = "entry deleted while pending";
    to_finish_.push_back(j);
    return;
  }
  bool has_id = false;
  bool has_name = false;
  for (size_t i = 0; i + 1 < f->elements; i += 2) {
    auto key = internal::str(f->element[i]);
    auto val = internal::str(f->element[i + 1]);
    auto num = [&] {
      return std::strtoll(std::string{val}.c_str(), nullptr, 10);
    };
    if (key == "id") {
      j->id = std::string{val};
      has_id = !val.empty();
    } else if (key == "n") {
      j->name = std::string{val};
      has_name = !val.empty();
    } else if (key == "p") {
      j->payload = std::string{val};
    } else if (key == "k") {
      j->key = std::string{val};
    } else if (key == "a") {
      j->attempt = static_cast<uint32_t>(std::max<long long>(1, num()));
    } else if (key == "o") {
      j->options = std::string{val};
      task_options opts;
      if (internal::decode_options(j->options, opts)) {
        j->max_attempts = opts.max_attempts;
        j->backoff = opts.backoff;
        j->timeout_ms = internal::to_ms(opts.timeout);
      }
    }
  }
  j->attempt += static_cast<uint32_t>(deliveries > 0 ? deliveries - 1 : 0);
  if (!has_id || !has_name) {
    if (!has_id)
      j->id = "entry-" + j->entry;
    j->kind = "dead";
    j->text =
        describe(make_error(errc::malformed_entry, "missing task id or name"));
  } else if (handlers_.find(j->name) == handlers_.end()) {
    j->kind = "dead";
    j->text = describe(
        make_error(errc::unknown_task,
                   fmt::format("no handler for task name '{}'", j->name)));
  } else if (j->attempt > j->max_attempts) {
    j->kind = "dead";
    j->text = fmt::format("delivered {} times without an acknowledgement "
                          "(worker lost); max attempts {}",
                          j->attempt, j->max_attempts);
    j->attempt = j->max_attempts;
  }
  if (!j->kind.empty()) {
    to_finish_.push_back(j);
    return;
  }
  to_run_.push_back(j);
}

size_t worker::impl::parse_read(const redisReply* r) {
  size_t n = 0;
  if (r->type != REDIS_REPLY_ARRAY)
    return n;
  for (size_t s = 0; s < r->elements; ++s) {
    auto* pair = r->element[s];
    if (pair->type != REDIS_REPLY_ARRAY || pair->elements != 2)
      continue;
    auto sname = internal::str(pair->element[0]);
    int idx = 1;
    for (int i = 0; i < 3; ++i)
      if (k_.streams[i] == sname)
        idx = i;
    auto* entries = pair->element[1];
    for (size_t i = 0; i < entries->elements; ++i)
      accept(idx, entries->element[i], 1);
    n += entries->elements;
  }
  return n;
}

void worker::impl::dispatch() {
  bool any = std::any_of(pool_.begin(), pool_.end(),
                         [](const caf::actor& a) { return a != nullptr; });
  if (to_run_.empty() || !any) {
    update_leases();
    return;
  }
  // Highest priority first.
  std::stable_sort(
      to_run_.begin(), to_run_.end(),
      [](const job_ptr& a, const job_ptr& b) { return a->stream < b->stream; });
  auto now = steady_clock::now();
  std::vector<job_batch> batches(pool_.size());
  for (auto& j : to_run_) {
    size_t best = pool_.size();
    for (size_t i = 0; i < pool_.size(); ++i)
      if (pool_[i] &&
          (best == pool_.size() || outstanding_[i] < outstanding_[best]))
        best = i;
    j->actor = best;
    j->actor_id = pool_[best].id();
    j->started = now;
    ++outstanding_[j->actor];
    inflight_[j->entry] = j;
    if (!batches[j->actor])
      batches[j->actor] = std::make_shared<std::vector<job_ptr>>();
    batches[j->actor]->push_back(j);
  }
  for (size_t i = 0; i < batches.size(); ++i)
    if (batches[i])
      caf::anon_send(pool_[i], std::move(batches[i]));
  to_run_.clear();
  update_leases();
}

void worker::impl::wait_for_completion(milliseconds max, bool stop_known) {
  std::unique_lock<std::mutex> guard{mtx_};
  auto until = steady_clock::now() + max;
  if (stop_known)
    until = std::min(until, stop_deadline_ + milliseconds{1});
  cv_.wait_until(guard, until, [&] {
    return !done_.empty() || !died_.empty() || !fresh_.empty() || gave_up_ ||
           (stopping_ && !stop_known);
  });
}

bool worker::impl::linger() {
  size_t running = 0;
  for (auto n : outstanding_)
    running += n;
  steady_clock::time_point latest{};
  for (auto& j : to_finish_)
    latest = std::max(latest, j->started);
  if (running == 0 || latest == steady_clock::time_point{})
    return false;
  auto now = steady_clock::now();
  auto until = now + std::min<steady_clock::duration>(now - latest, linger_max);
  std::unique_lock<std::mutex> guard{mtx_};
  cv_.wait_until(guard, until,
                 [&] { return done_.size() >= running || !calm(); });
  return true;
}

size_t worker::impl::room_left() const {
  auto busy = inflight_.size() + to_run_.size();
  return busy < cfg_.batch_size ? cfg_.batch_size - busy : size_t{0};
}

milliseconds worker::impl::until_sweep(milliseconds most) const {
  auto left = std::chrono::duration_cast<milliseconds>(next_sweep_ -
                                                       steady_clock::now());
  return std::clamp(left, milliseconds{1}, most);
}

bool worker::impl::solo() const {
  return cfg_.concurrency == 1 && cfg_.batch_size == 1 && to_run_.empty() &&
         to_finish_.empty() && inflight_.size() == 1 &&
         inflight_.begin()->second->timeout_ms == 0 && conn_->connected() &&
         steady_clock::now() < next_sweep_;
}

bool worker::impl::calm() const {
  return !stopping_ && !gave_up_ && died_.empty() && fresh_.empty();
}

bool worker::impl::pass_baton() {
  if (!solo())
    return false;
  std::unique_lock<std::mutex> guard{mtx_};
  if (!calm() || !done_.empty())
    return false;
  baton_out_ = true;
  baton_holder_ = inflight_.begin()->second->actor_id;
  // The holder gives the baton back after a task when anything else is
  // to be done, and its death notice takes it back. While the holder runs
  // a task (as long as that takes), the reading thread takes the baton
  // back itself when a sweep is due or anything else needs it: a task may
  // run for minutes, and neither sweeps nor a stop deadline may wait for
  // it. It then waits for the task's completion as in the regular loop.
  while (baton_out_) {
    cv_.wait_for(guard, until_sweep(read_block_max));
    if (baton_out_ && !baton_busy_ &&
        (steady_clock::now() >= next_sweep_ || !calm()))
      baton_out_ = false;
  }
  return true;
}

void worker::impl::run_solo(const job_batch& xs) {
  for (auto& j : *xs) {
    if (outstanding_[j->actor] > 0)
      --outstanding_[j->actor];
    // Timed out while it ran: its failure is acknowledged already (and
    // the baton came with the next task, which is still to run).
    if (j->abandoned)
      continue;
    inflight_.erase(j->entry);
    to_finish_.push_back(j);
  }
  auto fetched = exchange(room_left());
  if (fetched)
    dispatch(); // To itself: runs once this handler returns.
  else
    lost_ = true;
  bool keep = fetched && solo();
  {
    std::lock_guard<std::mutex> guard{mtx_};
    baton_busy_ = false;
    keep = keep && calm();
    if (!keep)
      baton_out_ = false;
  }
  if (!keep)
    cv_.notify_one();
}

void worker::impl::read_loop() {
  conn_ = std::make_unique<internal::connection>(cfg_, url_);
  // Reconnect attempts since the connection was last up.
  size_t attempts = 0;
  next_sweep_ = steady_clock::now();
  for (;;) {
    bool stop_now = false;
    bool pool_gone = false;
    collect(stop_now, pool_gone);
    if (linger())
      collect(stop_now, pool_gone);
    if (stop_now || pool_gone) {
      bool past = stop_now && steady_clock::now() > stop_deadline_;
      // Tasks this worker holds but will not run go back to the queue at
      // the same attempt: at the deadline those no handler started, and
      // any read and not handed out.
      if (stop_now && !stop_handed_back_ && (past || inflight_.empty())) {
        stop_handed_back_ = true;
        withdraw_unstarted();
      }
      if (inflight_.empty() && to_finish_.empty())
        break;
      // Past the deadline, one more pass sends what went back.
      if (past && stop_tail_sent_)
        break;
      stop_tail_sent_ = past;
    }
    if (!conn_->connected() || conn_->scripts_lost()) {
      if (auto err = conn_->connect()) {
        lost_ = true;
        std::unique_lock<std::mutex> guard{mtx_};
        auto until = steady_clock::now() +
                     cfg_.reconnect_backoff.random_delay(attempts++);
        if (stop_now)
          until = std::min(until, stop_deadline_ + milliseconds{1});
        cv_.wait_until(guard, until, [&] { return stopping_ && !stop_now; });
        continue;
      }
      // One reply timeout for every command of this connection, long
      // enough for the longest blocking read.
      conn_->timeout(read_block_max + cfg_.io_timeout);
      if (lost_)
        ++reconnects_;
      lost_ = false;
      attempts = 0;
    }
    bool taking = !stop_now && !pool_gone;
    if (taking && steady_clock::now() >= next_sweep_) {
      next_sweep_ = steady_clock::now() + cfg_.sweep_interval;
      auto before = to_run_.size();
      if (sweep(*conn_)) {
        lost_ = true;
        continue;
      }
      if (to_run_.size() > before)
        dispatch();
    }
    auto room = room_left();
    bool read = taking && room > 0;
    if (!read && to_finish_.empty()) {
      dispatch();
      // No sweep is due while stopping: the stop's deadline bounds it.
      wait_for_completion(stop_now ? milliseconds{50}
                                   : until_sweep(milliseconds{50}),
                          stop_now);
      continue;
    }
    auto fetched = exchange(read ? room : 0);
    if (!fetched) {
      lost_ = true;
      continue;
    }
    dispatch();
    if (!read || pass_baton())
      continue;
    // The streams are drained (nothing, or less than asked for) while
    // tasks run, or wait for a handler actor the supervisor restarts:
    // wait for a completion (or the restart) rather than ask Redis again
    // at once, so that a finished task is acknowledged without an empty
    // read in between (new tasks wait at most 20 ms, as they would for a
    // blocking read).
    if (*fetched < room && (!inflight_.empty() || !to_run_.empty()))
      wait_for_completion(until_sweep(milliseconds{20}));
  }
}

} // namespace actorbus::queue
