// Sweep and reclaim: due delayed tasks move to the streams, tasks of dead
// workers are reclaimed; tasks this worker gives up on or will not run go
// back to the queue.

#include "worker_impl.hpp"

namespace actorbus::queue {

caf::error worker::impl::sweep(internal::connection& conn) {
  // One round trip: promote, then reclaim from each stream. Reclaims
  // more than one batch: every task of a dead worker is taken back by the
  // first sweep after its visibility timeout.
  conn.append(conn.eval(internal::script::promote, {k_.delayed},
                        {cfg_.name_space, "1000", internal::group_name}));
  auto count = std::to_string(std::max<size_t>(cfg_.batch_size, 64));
  auto idle = std::to_string(internal::to_ms(cfg_.visibility_timeout));
  for (int s = 0; s < 3; ++s)
    conn.append(
        conn.eval(internal::script::reclaim, {k_.streams[s]},
                  {cfg_.name_space, internal::group_name, name_, idle, count}));
  if (auto err = conn.flush())
    return err;
  auto p = conn.next_reply();
  if (!p)
    return std::move(p.error());
  if ((*p)->type == REDIS_REPLY_ERROR)
    runtime::log(runtime::log_level::warning, "queue worker: sweep failed: {}",
                 internal::render(p->get()));
  for (int s = 0; s < 3; ++s) {
    auto r = conn.next_reply();
    if (!r)
      return std::move(r.error());
    // [entries, delivery counts]
    auto* x = r->get();
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
        x->element[0]->type != REDIS_REPLY_ARRAY)
      continue;
    auto* entries = x->element[0];
    auto* counts = x->element[1];
    for (size_t i = 0; i < entries->elements; ++i) {
      auto* e = entries->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements < 1)
        continue;
      uint64_t deliveries = 2;
      if (counts->type == REDIS_REPLY_ARRAY && i < counts->elements &&
          counts->element[i]->type == REDIS_REPLY_INTEGER)
        deliveries = static_cast<uint64_t>(counts->element[i]->integer);
      auto entry = std::string{internal::str(e->element[0])};
      auto same = [&](const job_ptr& j) { return j->entry == entry; };
      // Ours already: a lease renewal came too late, or its (unleased)
      // acknowledgement waits for Redis to take it.
      if (inflight_.count(entry) != 0 ||
          std::any_of(to_run_.begin(), to_run_.end(), same) ||
          std::any_of(to_finish_.begin(), to_finish_.end(), same))
        continue;
      ++reclaimed_;
      accept(s, e, deliveries);
    }
  }
  return caf::none;
}

void worker::impl::give_up_on(job& j, std::string reason) {
  j.abandoned = true;
  auto f = std::make_shared<job>();
  static_cast<internal::delivery&>(*f) = j;
  fail(*f, std::move(reason), false);
  to_finish_.push_back(std::move(f));
}

bool worker::impl::withdraw_unstarted() {
  std::vector<job_ptr> withdrawn;
  for (auto& [entry, j] : inflight_) {
    int64_t waiting = 0;
    if (!j->abandoned && j->begun_ns.compare_exchange_strong(
                             waiting, -1, std::memory_order_acq_rel)) {
      j->abandoned = true;
      withdrawn.push_back(j);
    }
  }
  for (auto& j : withdrawn)
    inflight_.erase(j->entry);
  sort_by_entry(withdrawn);
  for (auto& j : withdrawn)
    j = fresh_copy(*j);
  to_run_.insert(to_run_.begin(), withdrawn.begin(), withdrawn.end());
  if (to_run_.empty())
    return false;
  hand_back_to_run("the worker stopped before running it");
  update_leases();
  return true;
}

job_ptr worker::impl::fresh_copy(const job& j) {
  auto f = std::make_shared<job>();
  static_cast<internal::delivery&>(*f) = j;
  f->abandoned = false;
  return f;
}

void worker::impl::sort_by_entry(std::vector<job_ptr>& xs) {
  auto key = [](const job_ptr& j) {
    unsigned long long ms = 0;
    unsigned long long seq = 0;
    std::sscanf(j->entry.c_str(), "%llu-%llu", &ms, &seq);
    return std::make_tuple(j->stream, ms, seq);
  };
  std::sort(xs.begin(), xs.end(), [&](const job_ptr& a, const job_ptr& b) {
    return key(a) < key(b);
  });
}

void worker::impl::hand_back_to_run(const char* reason) {
  for (auto& j : to_run_) {
    j->kind = "retry";
    j->text = reason;
    j->delay_ms = 0;
    j->requeue = true;
    to_finish_.push_back(j);
  }
  to_run_.clear();
}

} // namespace actorbus::queue
