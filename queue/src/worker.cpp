// The consumer side: reading thread, heartbeat thread, handler actors.

#include "actorbus/queue/worker.hpp"

#include "actorbus/queue/embedded_redis.hpp"
#include "actorbus/runtime/log.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "redis.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unistd.h>
#include <unordered_map>

namespace actorbus::queue::internal {

/// One delivery of a task, shared by the reading thread and a handler actor.
struct job {
  std::string entry;
  int stream = 1;
  std::string id;
  std::string name;
  std::string payload;
  std::string key;
  uint32_t attempt = 1;
  uint32_t max_attempts = 1;
  int64_t backoff_ms = 0;
  int64_t backoff_max_ms = 0;
  int64_t timeout_ms = 0;
  std::chrono::steady_clock::time_point started;
  size_t actor = 0;
  bool abandoned = false;
  // Outcome.
  std::string kind; // ok, retry, dead
  std::string text;
  int64_t delay_ms = 0;
  std::vector<std::vector<std::string>> effects;
};

using job_ptr = std::shared_ptr<job>;

/// Jobs handed to one handler actor at once (one message, one wake-up).
using job_batch = std::shared_ptr<std::vector<job_ptr>>;

} // namespace actorbus::queue::internal

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(actorbus::queue::internal::job_batch)

namespace actorbus::queue {

using internal::job;
using internal::job_batch;
using internal::job_ptr;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

struct worker::impl : std::enable_shared_from_this<worker::impl> {
  impl(runtime::runtime& r, queue_config c)
      : rt(r)
      , cfg(std::move(c))
      , k(cfg.name_space) {
    if (cfg.heartbeat_interval.count() <= 0)
      cfg.heartbeat_interval =
          std::max(milliseconds{1}, cfg.visibility_timeout / 3);
    cfg.batch_size = std::max<size_t>(cfg.batch_size, 1);
    cfg.concurrency = std::max<size_t>(cfg.concurrency, 1);
    char host[64] = {0};
    gethostname(host, sizeof host - 1);
    static std::atomic<int> seq{0};
    name = fmt::format("{}-{}-{}", host, getpid(), ++seq);
  }

  runtime::runtime& rt;
  queue_config cfg;
  internal::keys k;
  std::string url;
  std::shared_ptr<embedded_redis> embedded;
  std::string name;
  std::unordered_map<std::string, task_handler> handlers;
  std::function<void(fault_point)> hook;

  // Handler actors (reading thread only, after start).
  std::vector<caf::actor> pool;
  std::vector<size_t> outstanding;

  // Completions and deaths, pushed by handler actors.
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<job_ptr> done;
  std::vector<size_t> died;
  bool stopping = false;
  steady_clock::time_point stop_deadline;

  // Entries whose lease the heartbeat renews.
  std::mutex lease_mtx;
  std::vector<std::pair<int, std::string>> leased;

  std::thread reader;
  std::thread heartbeat;
  bool started = false;

  std::atomic<uint64_t> succeeded{0};
  std::atomic<uint64_t> retried{0};
  std::atomic<uint64_t> dead_lettered{0};
  std::atomic<uint64_t> reclaimed{0};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<uint64_t> restarts{0};

  // -- handler actors ---------------------------------------------------------

  void run_batch(const job_batch& xs) {
    for (auto& j : *xs)
      run_job(j);
    {
      std::lock_guard<std::mutex> guard{mtx};
      done.insert(done.end(), xs->begin(), xs->end());
    }
    cv.notify_all();
  }

  void run_job(const job_ptr& j) {
    auto it = handlers.find(j->name);
    caf::expected<std::string> res{std::string{}};
    task_context ctx{j->id, j->attempt, j->key};
    try {
      res = it->second(ctx, j->payload);
    } catch (const std::exception& e) {
      res = caf::make_error(caf::sec::runtime_error,
                            std::string{"handler threw: "} + e.what());
    } catch (...) {
      res = caf::make_error(caf::sec::runtime_error, "handler threw");
    }
    if (res) {
      j->kind = "ok";
      j->text = std::move(*res);
      j->effects = ctx.effects();
    } else {
      fail(*j, rt.system().render(res.error()),
           res.error() == caf::sec::invalid_argument);
    }
  }

  static void fail(job& j, std::string reason, bool permanent) {
    if (permanent || j.attempt >= j.max_attempts) {
      j.kind = "dead";
      j.text = permanent ? std::move(reason)
                         : fmt::format("failed {} attempt(s); last error: {}",
                                       j.attempt, reason);
      return;
    }
    j.kind = "retry";
    j.text = std::move(reason);
    int64_t delay = j.backoff_ms;
    for (uint32_t i = 1; i < j.attempt && delay < j.backoff_max_ms; ++i)
      delay *= 2;
    j.delay_ms = std::min(delay, j.backoff_max_ms);
  }

  caf::error spawn_actor(size_t idx) {
    auto self = shared_from_this();
    auto hdl = rt.spawn<caf::detached>(
        [self](caf::event_based_actor*) -> caf::behavior {
          return {[self](job_batch& xs) { self->run_batch(xs); }};
        });
    if (!hdl)
      return std::move(hdl.error());
    std::weak_ptr<impl> weak = self;
    (*hdl)->attach_functor([weak, idx](const caf::error&) {
      if (auto s = weak.lock()) {
        {
          std::lock_guard<std::mutex> guard{s->mtx};
          if (s->stopping)
            return;
          s->died.push_back(idx);
        }
        s->cv.notify_all();
      }
    });
    if (idx < pool.size())
      pool[idx] = *hdl;
    else
      pool.push_back(*hdl);
    return caf::none;
  }

  // -- reading thread ---------------------------------------------------------

  std::unordered_map<std::string, job_ptr> inflight;
  std::vector<job_ptr> to_finish;

  void update_leases() {
    std::vector<std::pair<int, std::string>> xs;
    xs.reserve(inflight.size());
    for (auto& [entry, j] : inflight)
      xs.emplace_back(j->stream, entry);
    std::lock_guard<std::mutex> guard{lease_mtx};
    leased.swap(xs);
  }

  void call_hook(fault_point p) {
    if (hook)
      hook(p);
  }

  /// Turns one stream entry into a job to run or a record to finish.
  void accept(int stream, const redisReply* e, uint64_t deliveries,
              std::vector<job_ptr>& to_run) {
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
      to_finish.push_back(j);
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
      } else if (key == "m") {
        j->max_attempts = static_cast<uint32_t>(std::max<long long>(1, num()));
      } else if (key == "b") {
        j->backoff_ms = num();
      } else if (key == "bm") {
        j->backoff_max_ms = num();
      } else if (key == "t") {
        j->timeout_ms = num();
      }
    }
    j->attempt += static_cast<uint32_t>(deliveries > 0 ? deliveries - 1 : 0);
    if (!has_id || !has_name) {
      if (!has_id)
        j->id = "entry-" + j->entry;
      j->kind = "dead";
      j->text = "malformed entry: missing task id or name";
    } else if (handlers.find(j->name) == handlers.end()) {
      j->kind = "dead";
      j->text = fmt::format("unknown task name '{}'", j->name);
    } else if (j->attempt > j->max_attempts) {
      j->kind = "dead";
      j->text = fmt::format("delivered {} times without an acknowledgement "
                            "(worker lost); max attempts {}",
                            j->attempt, j->max_attempts);
      j->attempt = j->max_attempts;
    }
    if (!j->kind.empty()) {
      to_finish.push_back(j);
      return;
    }
    to_run.push_back(j);
  }

  void parse_read(const redisReply* r, std::vector<job_ptr>& to_run) {
    if (r->type != REDIS_REPLY_ARRAY)
      return;
    for (size_t s = 0; s < r->elements; ++s) {
      auto* pair = r->element[s];
      if (pair->type != REDIS_REPLY_ARRAY || pair->elements != 2)
        continue;
      auto sname = internal::str(pair->element[0]);
      int idx = 1;
      for (int i = 0; i < 3; ++i)
        if (k.streams[i] == sname)
          idx = i;
      auto* entries = pair->element[1];
      for (size_t i = 0; i < entries->elements; ++i)
        accept(idx, entries->element[i], 1, to_run);
    }
  }

  void dispatch(std::vector<job_ptr>& to_run) {
    if (to_run.empty())
      return;
    // Highest priority first.
    std::stable_sort(to_run.begin(), to_run.end(),
                     [](const job_ptr& a, const job_ptr& b) {
                       return a->stream < b->stream;
                     });
    auto now = steady_clock::now();
    std::vector<job_batch> batches(pool.size());
    for (auto& j : to_run) {
      auto best = std::min_element(outstanding.begin(), outstanding.end()) -
                  outstanding.begin();
      j->actor = static_cast<size_t>(best);
      j->started = now;
      ++outstanding[j->actor];
      inflight[j->entry] = j;
      if (!batches[j->actor])
        batches[j->actor] = std::make_shared<std::vector<job_ptr>>();
      batches[j->actor]->push_back(j);
    }
    for (size_t i = 0; i < batches.size(); ++i)
      if (batches[i])
        caf::anon_send(pool[i], std::move(batches[i]));
    to_run.clear();
    update_leases();
  }

  /// Moves due delayed tasks and reclaims entries of dead workers.
  caf::error sweep(internal::connection& conn, std::vector<job_ptr>& to_run) {
    auto p = conn.run(conn.eval(internal::script::promote, {k.delayed},
                                {cfg.name_space, "1000"}));
    if (!p)
      return std::move(p.error());
    for (int s = 0; s < 3; ++s) {
      auto r = conn.run({"XAUTOCLAIM", k.streams[s], internal::group_name, name,
                         std::to_string(cfg.visibility_timeout.count()), "0-0",
                         "COUNT", std::to_string(cfg.batch_size)});
      if (!r)
        return std::move(r.error());
      // Redis 6.2 answers [cursor, entries]; 7.0 adds [deleted ids].
      if ((*r)->type != REDIS_REPLY_ARRAY || (*r)->elements < 2)
        continue;
      auto* entries = (*r)->element[1];
      if (entries->type != REDIS_REPLY_ARRAY || entries->elements == 0)
        continue;
      for (size_t i = 0; i < entries->elements; ++i) {
        auto* e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1)
          continue;
        auto id = std::string{internal::str(e->element[0])};
        conn.append(
            {"XPENDING", k.streams[s], internal::group_name, id, id, "1"});
      }
      for (size_t i = 0; i < entries->elements; ++i) {
        auto* e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1)
          continue;
        auto pr = conn.next_reply();
        if (!pr)
          return std::move(pr.error());
        uint64_t deliveries = 2;
        auto* x = pr->get();
        if (x->type == REDIS_REPLY_ARRAY && x->elements == 1 &&
            x->element[0]->elements == 4)
          deliveries =
              static_cast<uint64_t>(x->element[0]->element[3]->integer);
        auto entry = std::string{internal::str(e->element[0])};
        if (inflight.count(entry) != 0)
          continue; // Ours already (a lease renewal came too late).
        ++reclaimed;
        accept(s, e, deliveries, to_run);
      }
    }
    return caf::none;
  }

  std::vector<std::string> finish_command(internal::connection& conn) {
    std::vector<std::string> argv{cfg.name_space, internal::group_name,
                                  std::to_string(cfg.result_ttl.count())};
    for (auto& j : to_finish) {
      argv.push_back(j->kind);
      argv.push_back(std::to_string(j->stream));
      argv.push_back(j->entry);
      argv.push_back(j->id);
      argv.push_back(j->text);
      argv.push_back(j->key);
      argv.push_back(std::to_string(j->attempt + 1));
      argv.push_back(std::to_string(j->delay_ms));
      argv.push_back(j->name);
      argv.push_back(j->kind == "dead" ? j->payload : std::string{});
      argv.push_back(std::to_string(j->attempt));
      argv.push_back(std::to_string(j->effects.size()));
      for (auto& e : j->effects) {
        argv.push_back(std::to_string(e.size()));
        argv.insert(argv.end(), e.begin(), e.end());
      }
    }
    return conn.eval(internal::script::finish, {}, std::move(argv));
  }

  void collect(bool& stop_now) {
    std::vector<job_ptr> finished;
    std::vector<size_t> deaths;
    {
      std::lock_guard<std::mutex> guard{mtx};
      finished.swap(done);
      deaths.swap(died);
      stop_now = stopping;
    }
    for (auto& j : finished) {
      if (j->actor < outstanding.size() && outstanding[j->actor] > 0)
        --outstanding[j->actor];
      if (j->abandoned)
        continue;
      inflight.erase(j->entry);
      to_finish.push_back(j);
    }
    for (auto idx : deaths) {
      ++restarts;
      runtime::log(runtime::log_level::warning,
                   "queue worker: handler actor {} died; restarting", idx);
      for (auto& [entry, j] : inflight)
        if (j->actor == idx && !j->abandoned) {
          j->abandoned = true;
          fail(*j, "handler actor died", false);
          to_finish.push_back(j);
        }
      outstanding[idx] = 0;
      if (auto err = spawn_actor(idx))
        runtime::log(runtime::log_level::error,
                     "queue worker: cannot restart handler actor: {}",
                     rt.system().render(err));
    }
    auto now = steady_clock::now();
    for (auto& [entry, j] : inflight)
      if (!j->abandoned && j->timeout_ms > 0 &&
          now - j->started > milliseconds{j->timeout_ms}) {
        j->abandoned = true;
        fail(*j, fmt::format("timed out after {} ms", j->timeout_ms), false);
        to_finish.push_back(j);
      }
    for (auto& j : to_finish)
      inflight.erase(j->entry);
    if (!finished.empty() || !deaths.empty())
      update_leases();
  }

  void wait_for_completion(milliseconds max) {
    std::unique_lock<std::mutex> guard{mtx};
    cv.wait_for(guard, max,
                [&] { return !done.empty() || !died.empty() || stopping; });
  }

  void read_loop() {
    internal::connection conn{cfg, url};
    auto backoff = milliseconds{10};
    bool lost = false;
    auto next_sweep = steady_clock::now();
    std::vector<job_ptr> to_run;
    for (;;) {
      bool stop_now = false;
      collect(stop_now);
      if (stop_now) {
        if (inflight.empty() && to_finish.empty())
          break;
        if (steady_clock::now() > stop_deadline)
          break;
      }
      if (!conn.connected()) {
        if (auto err = conn.connect()) {
          lost = true;
          std::unique_lock<std::mutex> guard{mtx};
          cv.wait_for(guard, backoff, [&] { return stopping; });
          backoff = std::min(backoff * 2, cfg.reconnect_backoff_max);
          continue;
        }
        if (lost)
          ++reconnects;
        lost = false;
        backoff = milliseconds{10};
      }
      if (!stop_now && steady_clock::now() >= next_sweep) {
        next_sweep = steady_clock::now() + cfg.sweep_interval;
        if (sweep(conn, to_run)) {
          lost = true;
          continue;
        }
      }
      auto room = inflight.size() + to_run.size() < cfg.batch_size
                      ? cfg.batch_size - inflight.size() - to_run.size()
                      : size_t{0};
      bool read = !stop_now && room > 0;
      bool finish = !to_finish.empty();
      bool may_block = inflight.empty() && !finish && to_run.empty();
      if (!read && !finish) {
        dispatch(to_run);
        wait_for_completion(std::min(cfg.sweep_interval, milliseconds{50}));
        continue;
      }
      auto block = std::min(cfg.sweep_interval, milliseconds{100});
      if (finish)
        conn.append(finish_command(conn));
      if (read) {
        std::vector<std::string> cmd{
            "XREADGROUP", "GROUP", internal::group_name,
            name,         "COUNT", std::to_string(room)};
        if (may_block) {
          cmd.emplace_back("BLOCK");
          cmd.push_back(std::to_string(block.count()));
        }
        cmd.emplace_back("STREAMS");
        for (auto& s : k.streams)
          cmd.push_back(s);
        for (int i = 0; i < 3; ++i)
          cmd.emplace_back(">");
        conn.timeout(may_block ? block + cfg.io_timeout : milliseconds{0});
        conn.append(cmd);
      }
      if (conn.flush()) {
        lost = true;
        continue;
      }
      if (finish) {
        call_hook(fault_point::after_effect);
        auto r = conn.next_reply();
        if (!r) {
          lost = true;
          continue; // to_finish stays; sent again after reconnecting.
        }
        if ((*r)->type == REDIS_REPLY_ERROR) {
          runtime::log(runtime::log_level::warning,
                       "queue worker: acknowledgement failed: {}",
                       internal::render(r->get()));
          conn.drop();
          lost = true;
          continue;
        }
        for (auto& j : to_finish) {
          if (j->kind == "ok")
            ++succeeded;
          else if (j->kind == "retry")
            ++retried;
          else
            ++dead_lettered;
        }
        to_finish.clear();
        call_hook(fault_point::after_ack);
      }
      if (read) {
        auto r = conn.next_reply();
        conn.timeout(milliseconds{0});
        if (!r) {
          lost = true;
          continue;
        }
        if ((*r)->type == REDIS_REPLY_ERROR) {
          // NOGROUP after Redis lost its data: reconnecting recreates it.
          runtime::log(runtime::log_level::warning,
                       "queue worker: read failed: {}",
                       internal::render(r->get()));
          conn.drop();
          lost = true;
          continue;
        }
        auto before = to_run.size();
        parse_read(r->get(), to_run);
        if (to_run.size() > before || !to_finish.empty())
          call_hook(fault_point::before_handle);
        bool got = to_run.size() > before || !to_finish.empty();
        dispatch(to_run);
        if (!got && !may_block && !inflight.empty())
          wait_for_completion(milliseconds{20});
      } else {
        dispatch(to_run);
      }
    }
  }

  void heartbeat_loop() {
    internal::connection conn{cfg, url};
    for (;;) {
      {
        std::unique_lock<std::mutex> guard{mtx};
        if (cv.wait_for(guard, cfg.heartbeat_interval,
                        [&] { return stopping && inflight_empty_hint; }))
          return;
      }
      std::vector<std::pair<int, std::string>> xs;
      {
        std::lock_guard<std::mutex> guard{lease_mtx};
        xs = leased;
      }
      if (xs.empty())
        continue;
      if (conn.connect())
        continue;
      for (int s = 0; s < 3; ++s) {
        std::vector<std::string> cmd{"XCLAIM", k.streams[s],
                                     internal::group_name, name, "0"};
        for (auto& [stream, entry] : xs)
          if (stream == s)
            cmd.push_back(entry);
        if (cmd.size() == 5)
          continue;
        cmd.emplace_back("JUSTID");
        if (!conn.run(cmd))
          break;
      }
    }
  }

  bool inflight_empty_hint = false;
};

worker::worker(runtime::runtime& rt, queue_config cfg)
    : impl_(std::make_shared<impl>(rt, std::move(cfg))) {
  // nop
}

worker::~worker() {
  stop();
}

void worker::handle(std::string name, task_handler fn) {
  impl_->handlers[std::move(name)] = std::move(fn);
}

void worker::on_fault_point(std::function<void(fault_point)> hook) {
  impl_->hook = std::move(hook);
}

const std::string& worker::consumer() const {
  return impl_->name;
}

caf::error worker::start() {
  auto& st = *impl_;
  if (st.started)
    return caf::none;
  st.url = st.cfg.url;
  if (st.url.empty()) {
    auto e = embedded_redis::shared();
    if (!e)
      return std::move(e.error());
    st.embedded = *e;
    st.url = st.embedded->url();
  }
  {
    internal::connection probe{st.cfg, st.url};
    if (auto err = probe.connect())
      return err;
  }
  st.outstanding.assign(st.cfg.concurrency, 0);
  for (size_t i = 0; i < st.cfg.concurrency; ++i)
    if (auto err = st.spawn_actor(i))
      return err;
  st.started = true;
  st.reader = std::thread{[ptr = impl_] { ptr->read_loop(); }};
  st.heartbeat = std::thread{[ptr = impl_] { ptr->heartbeat_loop(); }};
  return caf::none;
}

void worker::stop(caf::timespan deadline) {
  auto& st = *impl_;
  if (!st.started)
    return;
  {
    std::lock_guard<std::mutex> guard{st.mtx};
    st.stopping = true;
    st.stop_deadline =
        steady_clock::now() +
        std::chrono::duration_cast<steady_clock::duration>(deadline);
  }
  st.cv.notify_all();
  if (st.reader.joinable())
    st.reader.join();
  {
    std::lock_guard<std::mutex> guard{st.mtx};
    st.inflight_empty_hint = true;
  }
  st.cv.notify_all();
  if (st.heartbeat.joinable())
    st.heartbeat.join();
  for (auto& a : st.pool)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  st.pool.clear();
  st.started = false;
}

worker_stats worker::stats() const {
  auto& st = *impl_;
  worker_stats out;
  out.succeeded = st.succeeded.load();
  out.retried = st.retried.load();
  out.dead_lettered = st.dead_lettered.load();
  out.reclaimed = st.reclaimed.load();
  out.reconnects = st.reconnects.load();
  out.handler_restarts = st.restarts.load();
  return out;
}

} // namespace actorbus::queue
