// Acknowledgement batching: finished tasks are acknowledged (with their
// results, retries, dead tasks and effects) in one pipelined script per
// round trip, together with the next read.

#include "worker_impl.hpp"

namespace actorbus::queue {

std::vector<std::string>
worker::impl::finish_command(internal::connection& conn) {
  std::vector<std::string> argv{
      cfg_.name_space, internal::group_name,
      std::to_string(internal::to_seconds(cfg_.result_ttl))};
  argv.reserve(3 + to_finish_.size() * 7);
  for (auto& j : to_finish_) {
    argv.push_back(j->kind);
    argv.push_back(std::to_string(j->stream));
    argv.push_back(j->entry);
    argv.push_back(j->id);
    argv.push_back(j->text);
    argv.push_back(j->key);
    if (j->kind == "retry") {
      argv.push_back(std::to_string(j->requeue ? j->attempt : j->attempt + 1));
      argv.push_back(std::to_string(j->delay_ms));
      argv.push_back(j->payload);
      argv.push_back(j->options);
      argv.push_back(j->name);
    } else if (j->kind == "dead") {
      argv.push_back(j->name);
      argv.push_back(j->payload);
      argv.push_back(std::to_string(j->attempt));
      argv.push_back(j->options);
    }
    argv.push_back(std::to_string(j->effects.size()));
    for (auto& e : j->effects) {
      argv.push_back(std::to_string(e.size()));
      argv.insert(argv.end(), e.begin(), e.end());
    }
  }
  return conn.eval(internal::script::finish, {}, std::move(argv));
}

void worker::impl::count_finished(size_t n) {
  n = std::min(n, to_finish_.size());
  for (size_t i = 0; i < n; ++i) {
    auto& kind = to_finish_[i]->kind;
    if (kind == "ok")
      ++succeeded_;
    else if (kind == "retry") {
      if (!to_finish_[i]->requeue)
        ++retried_;
    } else
      ++dead_lettered_;
  }
  to_finish_.erase(to_finish_.begin(),
                   to_finish_.begin() + static_cast<ptrdiff_t>(n));
}

void worker::impl::take_effect_failures(const redisReply* r, size_t sent) {
  if (r->type != REDIS_REPLY_ARRAY)
    return;
  for (size_t i = 1; i < r->elements; ++i) {
    auto id = internal::str(r->element[i]);
    runtime::log(runtime::log_level::warning,
                 "queue worker: an effect of task {} failed; the task is "
                 "dead-lettered",
                 id);
    for (size_t k = 0; k < std::min(sent, to_finish_.size()); ++k)
      if (to_finish_[k]->id == id)
        to_finish_[k]->kind = "dead";
  }
}

void worker::impl::take_read_behind(size_t room) {
  if (room == 0)
    return;
  auto r = conn_->next_reply();
  if (r && (*r)->type == REDIS_REPLY_ARRAY)
    parse_read(r->get());
}

caf::expected<size_t> worker::impl::exchange(size_t room) {
  bool finish = !to_finish_.empty();
  // A blocking read may follow the acknowledgements in the same round
  // trip: their reply comes at once, the read's when a task arrives.
  bool may_block = inflight_.empty() && to_run_.empty();
  // Not quiet for a task with effects: a failing effect fails its finish
  // script after the XACK, and only the script's reply tells.
  bool lone = finish && may_block && room > 0 && to_finish_.size() == 1 &&
              to_finish_.front()->effects.empty();
  auto sent = to_finish_.size();
  bool quiet = lone && quiet_acks_ && !loud_ack_ && quiet_left_ > 0;
  if (quiet)
    --quiet_left_;
  if (finish)
    loud_ack_ = false;
  if (quiet)
    conn_->append({"CLIENT", "REPLY", "SKIP"});
  if (finish)
    conn_->append(finish_command(*conn_));
  if (room > 0) {
    std::vector<std::string> cmd{"XREADGROUP", "GROUP", internal::group_name,
                                 name_,        "COUNT", std::to_string(room)};
    if (may_block) {
      cmd.emplace_back("BLOCK");
      cmd.push_back(std::to_string(until_sweep(read_block_max).count()));
    }
    cmd.emplace_back("STREAMS");
    for (auto& s : k_.streams)
      cmd.push_back(s);
    for (int i = 0; i < 3; ++i)
      cmd.emplace_back(">");
    conn_->append(cmd);
  }
  if (quiet) {
    auto& j = *to_finish_.front();
    conn_->append({"XPENDING", k_.streams[j.stream], internal::group_name,
                   j.entry, j.entry, "1"});
  }
  if (auto err = conn_->flush())
    return err;
  if (finish)
    call_hook(fault_point::after_effect);
  if (finish && !quiet) {
    auto r = conn_->next_reply();
    if (!r)
      return std::move(r.error()); // to_finish stays; sent again later.
    if ((*r)->type == REDIS_REPLY_ERROR) {
      runtime::log(runtime::log_level::warning,
                   "queue worker: acknowledgement failed: {}",
                   internal::render(r->get()));
      take_read_behind(room);
      conn_->drop();
      return make_error(errc::redis_error, "acknowledgement failed");
    }
    take_effect_failures(r->get(), sent);
    count_finished(sent);
    call_hook(fault_point::after_ack);
    // The read's reply did not come with the acknowledgement's: the read
    // blocks (as when workers share the stream), and this thread woke
    // twice. Skip the next acknowledgements' replies; with a worker that
    // always finds its next task waiting there is nothing to gain, and
    // the check would cost Redis two commands per task.
    if (lone && !conn_->input_buffered())
      quiet_left_ = 32;
  }
  if (room == 0)
    return size_t{0};
  auto r = conn_->next_reply();
  if (!r)
    return std::move(r.error());
  bool check = quiet; // the XPENDING's reply is still to take
  if (quiet && (*r)->type == REDIS_REPLY_ERROR) {
    // Either CLIENT REPLY was refused (an ACL, a proxy): its error came
    // first, and the finish script's reply (always an integer), the
    // read's and the check's follow. Or the read failed: only the check's
    // reply (an array) follows.
    auto a = conn_->next_reply();
    if (!a)
      return std::move(a.error()); // to_finish stays; sent again later.
    if ((*a)->type != REDIS_REPLY_INTEGER) {
      // The read failed (quiet mode is not to blame), or both failed.
      quiet_acks_ = (*a)->type == REDIS_REPLY_ARRAY;
      runtime::log(runtime::log_level::warning, "queue worker: read failed: {}",
                   internal::render(r->get()));
      conn_->drop();
      return make_error(errc::redis_error, "read failed");
    }
    quiet_acks_ = false;
    quiet = false;
    runtime::log(runtime::log_level::warning,
                 "queue worker: CLIENT REPLY refused ({}); acknowledging "
                 "with replies",
                 internal::render(r->get()));
    count_finished(sent);
    call_hook(fault_point::after_ack);
    r = conn_->next_reply();
    if (!r)
      return std::move(r.error());
  }
  if ((*r)->type == REDIS_REPLY_ERROR) {
    // NOGROUP after Redis lost its data: reconnecting recreates it.
    runtime::log(runtime::log_level::warning, "queue worker: read failed: {}",
                 internal::render(r->get()));
    conn_->drop();
    return make_error(errc::redis_error, "read failed");
  }
  // The read's tasks are taken before the check's reply: should that
  // fail, they still run (after the reconnect), as they are this
  // worker's now.
  auto before = to_run_.size();
  auto fetched = parse_read(r->get());
  if (check) {
    auto p = conn_->next_reply();
    if (!p)
      return std::move(p.error()); // to_finish stays; sent again later.
    if ((*p)->type != REDIS_REPLY_ARRAY) {
      // Out of step (a proxy answering CLIENT REPLY without skipping) or
      // XPENDING refused: acknowledge with replies from now on.
      quiet_acks_ = false;
      runtime::log(runtime::log_level::warning,
                   "queue worker: acknowledgement check failed: {}",
                   internal::render(p->get()));
      conn_->drop();
      return make_error(errc::redis_error, "acknowledgement check failed");
    }
    if (!quiet) {
      // CLIENT REPLY refused: the finish script's reply counted above.
    } else if ((*p)->elements == 0) {
      count_finished(sent);
      call_hook(fault_point::after_ack);
    } else {
      runtime::log(runtime::log_level::warning,
                   "queue worker: acknowledgement of {} not applied; "
                   "sending it again",
                   to_finish_.front()->id);
      loud_ack_ = true;
    }
  }
  if (to_run_.size() > before || !to_finish_.empty())
    call_hook(fault_point::before_handle);
  return fetched;
}

} // namespace actorbus::queue
