// The producer side: enqueue, status, wait, cancel, dead tasks.

#include "actorbus/queue/client.hpp"

#include "actorbus/queue/embedded_redis.hpp"

#include "options.hpp"
#include "redis.hpp"

#include <caf/sec.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <random>

namespace actorbus::queue {

std::string_view to_string(task_status x) {
  switch (x) {
  case task_status::scheduled:
    return "scheduled";
  case task_status::queued:
    return "queued";
  case task_status::succeeded:
    return "succeeded";
  case task_status::dead:
    return "dead";
  case task_status::cancelled:
    return "cancelled";
  default:
    return "unknown";
  }
}

namespace {

task_status parse_status(std::string_view s) {
  for (auto x :
       {task_status::scheduled, task_status::queued, task_status::succeeded,
        task_status::dead, task_status::cancelled})
    if (to_string(x) == s)
      return x;
  return task_status::unknown;
}

bool terminal(task_status s) {
  return s == task_status::succeeded || s == task_status::dead ||
         s == task_status::cancelled;
}

caf::error redis_error(const redisReply* r, const char* what) {
  return make_error(errc::redis_error,
                    fmt::format("{} failed: {}", what, internal::render(r)));
}

} // namespace

struct client::impl {
  impl(const queue_config& c, std::string url,
       std::shared_ptr<embedded_redis> e)
      : cfg_(c)
      , embedded_(std::move(e))
      , conn_(c, std::move(url))
      , k_(c.name_space) {
    std::random_device rd;
    std::mt19937_64 gen{(static_cast<uint64_t>(rd()) << 32) ^ rd()};
    prefix_ = fmt::format("{:016x}", gen());
  }

  queue_config cfg_;
  std::shared_ptr<embedded_redis> embedded_;
  internal::connection conn_;
  internal::keys k_;
  std::string prefix_;
  uint64_t counter_ = 0;

  caf::error ensure() {
    return conn_.connect();
  }

  /// Runs one command; when the connection turns out to be dead (Redis
  /// restarted) or Redis lost the scripts (NOSCRIPT: the script did not
  /// run), reconnects and tries once more.
  caf::expected<internal::reply_ptr>
  exec(const std::vector<std::string>& args) {
    if (auto err = ensure())
      return err;
    auto r = conn_.run(args);
    if ((!r && !conn_.connected()) || conn_.scripts_lost()) {
      if (auto err = ensure())
        return err;
      r = conn_.run(args);
    }
    return r;
  }

  std::string next_id() {
    return fmt::format("{}-{:x}", prefix_, ++counter_);
  }

  /// What enqueue_lua and enqueue_many_lua take besides the id and the
  /// payload, checked.
  struct enqueue_fields {
    std::string name;
    std::string options;
    std::string key;
    int prio = 1;
    int64_t delay_ms = 0;
  };

  caf::expected<enqueue_fields> fields_of(std::string_view name,
                                          const task_options& opts) {
    if (name.empty())
      return caf::make_error(caf::sec::invalid_argument,
                             "task name: must not be empty");
    if (auto err = internal::check_options(opts))
      return err;
    auto prio = static_cast<int>(opts.level);
    int64_t delay = internal::to_ms(opts.delay);
    if (opts.run_at)
      delay = std::chrono::duration_cast<std::chrono::milliseconds>(
                  *opts.run_at - std::chrono::system_clock::now())
                  .count();
    return enqueue_fields{std::string{name}, internal::encode_options(opts),
                          opts.idempotency_key, prio,
                          std::max<int64_t>(delay, 0)};
  }

  caf::expected<std::vector<std::string>>
  enqueue_args(std::string_view name, const std::string& payload,
               const task_options& opts, std::string& id) {
    auto f = fields_of(name, opts);
    if (!f)
      return std::move(f.error());
    id = next_id();
    return conn_.eval(internal::script::enqueue,
                      {k_.task(id), k_.streams[f->prio], k_.delayed},
                      {id, std::move(f->name), payload, std::move(f->options),
                       std::move(f->key), std::to_string(f->prio),
                       std::to_string(f->delay_ms)});
  }

  /// Appends a wait on the task's wake-up list (the finish script pushes
  /// a token to it) for at most `left`, and an HMGET of the task's state
  /// that Redis runs as soon as the wait returns: a waiter needs no extra
  /// round trip after its wake-up. The wait is a BLMOVE from the list to
  /// itself: it takes the token and puts it straight back, so every waiter
  /// of the task (wait and run, in any number of clients) is woken, and the
  /// list, never empty, keeps the expiry the finish script gave it.
  void append_wait(std::string_view id, caf::timespan left) {
    // BLMOVE takes seconds (fractions allowed); the socket waits a bit
    // longer so the server's timeout answers first.
    conn_.timeout(left + cfg_.io_timeout);
    auto key = k_.notify(id);
    conn_.append(
        {"BLMOVE", key, key, "RIGHT", "LEFT",
         fmt::format("{:.3f}",
                     static_cast<double>(internal::to_ms(left)) / 1000.0)});
    conn_.append({"HMGET", k_.task(id), "s", "n", "a", "r", "err"});
  }

  /// Reads the replies of `append_wait`: the final info, or none when the
  /// wait timed out.
  caf::expected<std::optional<task_info>> read_wait(std::string_view id) {
    auto b = conn_.next_reply();
    if (!b) {
      conn_.timeout(caf::timespan{0});
      return std::move(b.error());
    }
    auto state = conn_.next_reply();
    conn_.timeout(caf::timespan{0});
    if (!state)
      return std::move(state.error());
    if ((*b)->type == REDIS_REPLY_ERROR)
      return redis_error(b->get(), "wait");
    if ((*b)->type == REDIS_REPLY_NIL)
      return std::optional<task_info>{};
    auto info = info_of(id, state->get());
    if (!info)
      return std::move(info.error());
    return std::optional<task_info>{std::move(*info)};
  }

  static std::chrono::milliseconds
  left_until(std::chrono::steady_clock::time_point deadline) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
  }

  /// Blocks on the task's wake-up list until the finish script pushes to
  /// it or the deadline passes.
  caf::expected<task_info>
  block_until_done(std::string_view id,
                   std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      auto left = left_until(deadline);
      if (left.count() <= 0)
        return caf::make_error(caf::sec::request_timeout,
                               fmt::format("task {} not finished in time", id));
      if (auto err = ensure())
        return err;
      append_wait(id, left);
      auto r = read_wait(id);
      if (!r)
        return std::move(r.error());
      if (*r)
        return std::move(**r);
    }
  }

  caf::expected<task_info> info_of(std::string_view id, const redisReply* r) {
    task_info out;
    out.id = std::string{id};
    if (r->type != REDIS_REPLY_ARRAY)
      return redis_error(r, "status");
    if (r->elements < 5)
      return out; // unknown
    out.status = parse_status(internal::str(r->element[0]));
    out.name = std::string{internal::str(r->element[1])};
    out.attempt = static_cast<uint32_t>(std::strtoul(
        std::string{internal::str(r->element[2])}.c_str(), nullptr, 10));
    out.result = std::string{internal::str(r->element[3])};
    out.error = std::string{internal::str(r->element[4])};
    return out;
  }
};

client::client(std::unique_ptr<impl> ptr)
    : impl_(std::move(ptr)) {
  // nop
}

client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;
client::~client() = default;

caf::expected<client> client::connect(queue_config cfg) {
  if (auto err = cfg.validate())
    return err;
  std::shared_ptr<embedded_redis> embedded;
  auto url = cfg.url;
  if (url.empty()) {
    auto e = embedded_redis::shared();
    if (!e)
      return std::move(e.error());
    embedded = *e;
    url = embedded->url();
  }
  auto ptr = std::make_unique<impl>(cfg, url, std::move(embedded));
  if (auto err = ptr->ensure())
    return err;
  return client{std::move(ptr)};
}

const std::string& client::url() const {
  return impl_->conn_.url();
}

caf::expected<std::string> client::enqueue_payload(std::string_view name,
                                                   std::string payload,
                                                   const task_options& opts) {
  if (auto err = impl_->ensure())
    return err;
  std::string id;
  auto args = impl_->enqueue_args(name, payload, opts, id);
  if (!args)
    return std::move(args.error());
  auto r = impl_->exec(*args);
  if (!r)
    return std::move(r.error());
  // A retry after a lost connection may find its own first try done.
  if ((*r)->type == REDIS_REPLY_ERROR &&
      internal::str(r->get()).find("duplicate task id") ==
          std::string_view::npos)
    return redis_error(r->get(), "enqueue");
  return id;
}

caf::expected<std::vector<std::string>>
client::enqueue_many(std::string_view name,
                     const std::vector<std::string>& payloads,
                     const task_options& opts) {
  auto f = impl_->fields_of(name, opts);
  if (!f)
    return std::move(f.error());
  std::vector<std::string> ids;
  ids.reserve(payloads.size());
  // One script call per 256 tasks, up to 16 calls in flight at once.
  constexpr size_t per_call = 256;
  constexpr size_t per_round = per_call * 16;
  for (size_t first = 0; first < payloads.size(); first += per_round) {
    auto last = std::min(payloads.size(), first + per_round);
    std::vector<std::vector<std::string>> cmds;
    for (auto i = first; i < last; i += per_call) {
      auto end = std::min(last, i + per_call);
      std::vector<std::string> argv{impl_->cfg_.name_space,
                                    f->name,
                                    f->options,
                                    f->key,
                                    std::to_string(f->prio),
                                    std::to_string(f->delay_ms)};
      argv.reserve(argv.size() + 2 * (end - i));
      for (auto j = i; j < end; ++j) {
        ids.push_back(impl_->next_id());
        argv.push_back(ids.back());
        argv.push_back(payloads[j]);
      }
      cmds.push_back(impl_->conn_.eval(internal::script::enqueue_many, {},
                                       std::move(argv)));
    }
    caf::error err;
    // Twice if Redis lost its scripts: a NOSCRIPT call added nothing.
    for (int round = 0; round < 2; ++round) {
      if (auto e = impl_->ensure())
        return e;
      for (auto& cmd : cmds)
        impl_->conn_.append(cmd);
      err = caf::none;
      bool lost = false;
      for (size_t i = 0; i < cmds.size(); ++i) {
        auto r = impl_->conn_.next_reply();
        if (!r)
          return std::move(r.error());
        lost = lost || internal::is_noscript(r->get());
        if ((*r)->type == REDIS_REPLY_ERROR && !err)
          err = redis_error(r->get(), "enqueue");
      }
      if (!lost)
        break;
    }
    if (err)
      return err;
  }
  return ids;
}

caf::expected<task_info> client::status(std::string_view id) {
  auto r =
      impl_->exec({"HMGET", impl_->k_.task(id), "s", "n", "a", "r", "err"});
  if (!r)
    return std::move(r.error());
  if ((*r)->elements == 5 && (*r)->element[0]->type == REDIS_REPLY_NIL) {
    task_info out;
    out.id = std::string{id};
    return out;
  }
  return impl_->info_of(id, r->get());
}

caf::expected<task_info> client::wait(std::string_view id,
                                      caf::timespan timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (auto err = impl_->ensure())
    return err;
  auto r = impl_->exec(impl_->conn_.eval(internal::script::wait_prepare,
                                         {impl_->k_.task(id)}, {}));
  if (!r)
    return std::move(r.error());
  auto info = impl_->info_of(id, r->get());
  if (!info || terminal(info->status) || info->status == task_status::unknown)
    return info;
  return impl_->block_until_done(id, deadline);
}

caf::expected<task_info> client::run(std::string_view name, std::string payload,
                                     const task_options& opts,
                                     caf::timespan timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (auto err = impl_->ensure())
    return err;
  std::string id;
  auto args = impl_->enqueue_args(name, payload, opts, id);
  if (!args)
    return std::move(args.error());
  args->emplace_back("1"); // mark as waited for
  // Enqueue and start waiting in one round trip.
  auto& st = *impl_;
  auto left = st.left_until(deadline);
  auto send = [&] {
    st.conn_.append(*args);
    if (left.count() > 0)
      st.append_wait(id, left);
    return st.conn_.flush();
  };
  if (auto err = send()) {
    // A connection Redis closed (restart) fails on write: once more.
    if (auto again = st.ensure())
      return again;
    if (auto again = send())
      return again;
  }
  auto r = st.conn_.next_reply();
  if (!r)
    return std::move(r.error());
  if (internal::is_noscript(r->get())) {
    // Redis lost its scripts, so the enqueue did not run: drop the wait
    // sent behind it, load them again and send both once more.
    st.conn_.drop();
    if (auto err = st.ensure())
      return err;
    if (auto err = send())
      return err;
    r = st.conn_.next_reply();
    if (!r)
      return std::move(r.error());
  }
  if ((*r)->type == REDIS_REPLY_ERROR) {
    // Unblocks the wait sent behind the failed enqueue.
    st.conn_.drop();
    return redis_error(r->get(), "enqueue");
  }
  if (left.count() > 0) {
    auto done = st.read_wait(id);
    if (!done)
      return std::move(done.error());
    if (*done)
      return std::move(**done);
  }
  return st.block_until_done(id, deadline);
}

caf::expected<bool> client::cancel(std::string_view id) {
  if (auto err = impl_->ensure())
    return err;
  auto r = impl_->exec(impl_->conn_.eval(
      internal::script::cancel, {impl_->k_.task(id), impl_->k_.delayed},
      {impl_->cfg_.name_space, internal::group_name, std::string{id},
       std::to_string(internal::to_seconds(impl_->cfg_.result_ttl))}));
  if (!r)
    return std::move(r.error());
  if ((*r)->type != REDIS_REPLY_INTEGER)
    return redis_error(r->get(), "cancel");
  return (*r)->integer == 1;
}

namespace {

/// A dead-letter stream entry as a `dead_task`; `name` stays empty when
/// the entry is not one.
dead_task dead_task_of(const redisReply* e) {
  dead_task d;
  if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
      e->element[1]->type != REDIS_REPLY_ARRAY)
    return d;
  d.entry = std::string{internal::str(e->element[0])};
  auto* f = e->element[1];
  for (size_t j = 0; j + 1 < f->elements; j += 2) {
    auto key = internal::str(f->element[j]);
    auto val = std::string{internal::str(f->element[j + 1])};
    auto num = [&] { return std::strtoll(val.c_str(), nullptr, 10); };
    if (key == "id") {
      d.task_id = std::move(val);
    } else if (key == "n") {
      d.name = std::move(val);
    } else if (key == "reason") {
      d.reason = std::move(val);
    } else if (key == "a") {
      d.attempts = static_cast<uint32_t>(std::max<long long>(0, num()));
    } else if (key == "p") {
      d.payload = std::move(val);
    } else if (key == "k") {
      d.options.idempotency_key = std::move(val);
    } else if (key == "pr") {
      auto p = num();
      if (p >= 0 && p <= 2)
        d.options.level = static_cast<priority>(p);
    } else if (key == "o") {
      internal::decode_options(val, d.options);
    }
  }
  return d;
}

} // namespace

caf::expected<std::vector<dead_task>> client::dead_tasks(std::size_t count) {
  auto r = impl_->exec(
      {"XRANGE", impl_->k_.dead, "-", "+", "COUNT", std::to_string(count)});
  if (!r)
    return std::move(r.error());
  if ((*r)->type != REDIS_REPLY_ARRAY)
    return redis_error(r->get(), "dead_tasks");
  std::vector<dead_task> out;
  for (size_t i = 0; i < (*r)->elements; ++i) {
    auto d = dead_task_of((*r)->element[i]);
    if (!d.entry.empty())
      out.push_back(std::move(d));
  }
  return out;
}

caf::expected<std::string> client::requeue(std::string_view dead_entry) {
  auto r = impl_->exec({"XRANGE", impl_->k_.dead, std::string{dead_entry},
                        std::string{dead_entry}});
  if (!r)
    return std::move(r.error());
  if ((*r)->type != REDIS_REPLY_ARRAY || (*r)->elements != 1)
    return make_error(errc::not_found,
                      fmt::format("no dead task {}", dead_entry));
  auto d = dead_task_of((*r)->element[0]);
  if (d.name.empty())
    return make_error(errc::malformed_entry,
                      fmt::format("dead task {} has no task name", dead_entry));
  auto id = enqueue_payload(d.name, std::move(d.payload), d.options);
  if (!id)
    return id;
  auto del = impl_->exec({"XDEL", impl_->k_.dead, std::string{dead_entry}});
  if (!del)
    return std::move(del.error());
  return id;
}

caf::expected<std::size_t> client::backlog() {
  auto r = impl_->exec(
      impl_->conn_.eval(internal::script::backlog, {},
                        {impl_->cfg_.name_space, internal::group_name}));
  if (!r)
    return std::move(r.error());
  if ((*r)->type != REDIS_REPLY_INTEGER)
    return redis_error(r->get(), "backlog");
  return static_cast<size_t>((*r)->integer);
}

caf::expected<std::string>
client::command(const std::vector<std::string>& args) {
  if (args.empty())
    return caf::make_error(caf::sec::invalid_argument,
                           "command: must not be empty");
  auto r = impl_->exec(args);
  if (!r)
    return std::move(r.error());
  if ((*r)->type == REDIS_REPLY_ERROR)
    return redis_error(r->get(), "command");
  return internal::render(r->get());
}

} // namespace actorbus::queue
