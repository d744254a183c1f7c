// The consumer side: reading thread, heartbeat thread, handler actors.

#include "actorbus/queue/worker.hpp"

#include "actorbus/actors/supervisor.hpp"
#include "actorbus/queue/embedded_redis.hpp"
#include "actorbus/runtime/log.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "redis.hpp"

#include <caf/actor_cast.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <tuple>
#include <unistd.h>
#include <unordered_map>

namespace actorbus::queue::internal {

/// One delivery of a task as the reading thread knows it; a handler actor
/// only reads it.
struct delivery {
  std::string entry;
  int stream = 1;
  std::string id;
  std::string name;
  std::string payload;
  std::string key;
  std::string options;
  uint32_t attempt = 1;
  uint32_t max_attempts = 1;
  int64_t backoff_ms = 0;
  int64_t backoff_max_ms = 0;
  int64_t timeout_ms = 0;
  std::chrono::steady_clock::time_point started;
  size_t actor = 0;
  caf::actor_id actor_id = 0;
  bool abandoned = false;
};

/// What running a delivery came to, written by the handler actor that ran
/// it (or by the reading thread, for a copy of a delivery it gave up on).
struct outcome {
  std::string kind; // ok, retry, dead
  std::string text;
  int64_t delay_ms = 0;
  /// A retry that spends no attempt: the task never ran (see `hand_back`).
  bool requeue = false;
  std::vector<std::vector<std::string>> effects;
};

/// One delivery of a task and its outcome, shared by the reading thread and
/// a handler actor.
struct job : delivery, outcome {
  /// 0 while the task waits for its handler actor; when the actor starts
  /// it, the steady clock's time then (ns, positive); -1 once the reading
  /// thread withdrew it (a stop's deadline passed): the actor then skips
  /// it. Whoever moves it from 0 decides. A task handed to an actor that
  /// died before starting it never ran, and is handed again without
  /// spending an attempt; its timeout counts from its start.
  std::atomic<int64_t> begun_ns{0};
};

/// The steady clock in ns, for `job::begun_ns` (positive).
inline int64_t steady_ns() {
  return std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
             .count());
}

using job_ptr = std::shared_ptr<job>;

/// Finished jobs and pool events, reported by handler actors and the
/// supervisor to the reading thread.
struct pool_events;

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

  // The supervisor of the handler actors; its children are the slots of
  // `pool` (reading thread only, after start; a null handle while the
  // supervisor restarts the slot's actor).
  caf::actor supervisor;
  std::vector<caf::actor> pool;
  std::vector<size_t> outstanding;

  // Completions, deaths and (re)starts of handler actors, pushed by the
  // actors and the supervisor.
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<job_ptr> done;
  std::vector<std::pair<size_t, caf::actor_id>> died;
  std::vector<std::pair<size_t, caf::actor>> fresh;
  bool gave_up = false;
  bool stopping = false;
  steady_clock::time_point stop_deadline;
  // The loop's state (everything below "reading thread") belongs to
  // whoever holds the baton: the reading thread, or the handler actor
  // `baton_holder` while `baton_out` (see `pass_baton`).
  bool baton_out = false;
  caf::actor_id baton_holder = 0;
  // The holder is using the loop's state (acknowledging and reading, in
  // `run_solo`): the reading thread cannot take the baton back meanwhile.
  bool baton_busy = false;

  // Entries whose lease the heartbeat renews. The heartbeat thread waits
  // on its own condition variable: a completion wakes only the reading
  // thread (one wake-up per task less).
  std::mutex lease_mtx;
  std::condition_variable lease_cv;
  std::vector<std::pair<int, std::string>> leased;
  bool heartbeat_stop = false;

  std::thread reader;
  std::thread heartbeat;
  bool started = false;

  std::atomic<uint64_t> succeeded{0};
  std::atomic<uint64_t> retried{0};
  std::atomic<uint64_t> dead_lettered{0};
  std::atomic<uint64_t> reclaimed{0};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<uint64_t> restarts{0};
  std::atomic<bool> gave_up_flag{false};

  // -- handler actors ---------------------------------------------------------

  void run_batch(const job_batch& xs, caf::actor_id actor) {
    for (auto& j : *xs)
      run_job(j);
    bool mine = false;
    {
      std::lock_guard<std::mutex> guard{mtx};
      mine = baton_out && baton_holder == actor && calm();
      baton_busy = mine;
      if (!mine) {
        if (baton_holder == actor)
          baton_out = false;
        done.insert(done.end(), xs->begin(), xs->end());
      }
    }
    if (mine)
      run_solo(xs);
    else
      cv.notify_one(); // Only the reading thread waits on `cv`.
  }

  void run_job(const job_ptr& j) {
    int64_t waiting = 0;
    if (!j->begun_ns.compare_exchange_strong(waiting, internal::steady_ns(),
                                             std::memory_order_acq_rel))
      return; // Withdrawn (and handed back) by the reading thread.
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

  static caf::behavior handler_actor(caf::event_based_actor* actor,
                                     std::shared_ptr<impl> self) {
    return {
        [self, id = actor->id()](job_batch& xs) { self->run_batch(xs, id); }};
  }

  /// Starts the actor of slot `idx` (called by the supervisor, also for
  /// restarts) and tells the reading thread about it.
  static caf::expected<caf::actor>
  start_handler(caf::actor_system& sys, const std::weak_ptr<impl>& weak,
                size_t idx) {
    auto self = weak.lock();
    if (!self)
      return caf::make_error(caf::sec::runtime_error, "queue worker gone");
    auto hdl = sys.spawn<caf::detached>(handler_actor, self);
    hdl->attach_functor([weak, idx, id = hdl.id()](const caf::error&) {
      if (auto s = weak.lock()) {
        bool news = false;
        {
          std::lock_guard<std::mutex> guard{s->mtx};
          // It ran its last handler: the loop is the reading thread's again.
          if (s->baton_out && s->baton_holder == id) {
            s->baton_out = false;
            s->baton_busy = false;
            news = true;
          }
          if (!s->stopping) {
            s->died.emplace_back(idx, id);
            news = true;
          }
        }
        if (news)
          s->cv.notify_all();
      }
    });
    {
      std::lock_guard<std::mutex> guard{self->mtx};
      self->fresh.emplace_back(idx, hdl);
    }
    self->cv.notify_all();
    return hdl;
  }

  caf::error spawn_pool() {
    std::weak_ptr<impl> weak = shared_from_this();
    actors::supervisor_config sc;
    sc.strategy = actors::restart_strategy::one_for_one;
    sc.max_restarts = cfg.handler_max_restarts;
    sc.period = cfg.handler_restart_period;
    sc.backoff.min = cfg.handler_restart_backoff;
    sc.backoff.max =
        std::max(cfg.handler_restart_backoff, cfg.handler_restart_backoff_max);
    sc.backoff.reset_after = cfg.handler_restart_period;
    for (size_t i = 0; i < cfg.concurrency; ++i) {
      actors::child_spec child;
      child.id = fmt::format("handler-{}", i);
      child.shutdown_timeout = std::chrono::seconds{1};
      child.start = [weak, i](caf::actor_system& sys) {
        return start_handler(sys, weak, i);
      };
      sc.children.push_back(std::move(child));
    }
    pool.assign(cfg.concurrency, caf::actor{});
    outstanding.assign(cfg.concurrency, 0);
    auto sup = actors::spawn_supervisor(rt.system(), std::move(sc));
    if (!sup)
      return std::move(sup.error());
    supervisor = std::move(*sup);
    caf::actor_cast<caf::abstract_actor*>(supervisor)
        ->attach_functor([weak](const caf::error& reason) {
          if (auto s = weak.lock()) {
            {
              std::lock_guard<std::mutex> guard{s->mtx};
              if (s->stopping)
                return;
              s->gave_up = true;
            }
            runtime::log(runtime::log_level::error,
                         "queue worker: handler supervisor gave up ({}); "
                         "taking no more tasks",
                         s->rt.system().render(reason));
            s->cv.notify_all();
          }
        });
    return caf::none;
  }

  // -- reading thread ---------------------------------------------------------

  std::unique_ptr<internal::connection> conn;
  steady_clock::time_point next_sweep;
  bool lost = false;
  std::unordered_map<std::string, job_ptr> inflight;
  std::vector<job_ptr> to_finish;
  // Whether `exchange` may skip an acknowledgement's reply (until Redis
  // refuses CLIENT REPLY); how many more lone acknowledgements skip it
  // before one takes its reply again to see whether reads still block; and
  // whether the next one must take its reply (it is sent again after a
  // quiet one was not applied, and its error is to be seen).
  bool quiet_acks = true;
  int quiet_left = 0;
  bool loud_ack = false;
  // Read or reclaimed, not yet handed to a handler actor.
  std::vector<job_ptr> to_run;
  // A stop has handed back the tasks this worker will not run; its last
  // pass (sending them) has begun.
  bool stop_handed_back = false;
  bool stop_tail_sent = false;

  void update_leases() {
    std::vector<std::pair<int, std::string>> xs;
    xs.reserve(inflight.size() + to_run.size());
    for (auto& [entry, j] : inflight)
      xs.emplace_back(j->stream, entry);
    for (auto& j : to_run)
      xs.emplace_back(j->stream, j->entry);
    std::lock_guard<std::mutex> guard{lease_mtx};
    leased.swap(xs);
  }

  void call_hook(fault_point p) {
    if (hook)
      hook(p);
  }

  /// Turns one stream entry into a job to run or a record to finish.
  void accept(int stream, const redisReply* e, uint64_t deliveries) {
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
      } else if (key == "o") {
        j->options = std::string{val};
        long long m = 1;
        long long b = 0;
        long long bm = 0;
        long long t = 0;
        if (std::sscanf(j->options.c_str(), "%lld %lld %lld %lld", &m, &b, &bm,
                        &t) == 4) {
          j->max_attempts = static_cast<uint32_t>(std::max<long long>(1, m));
          j->backoff_ms = b;
          j->backoff_max_ms = bm;
          j->timeout_ms = t;
        }
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

  /// Returns the number of entries read.
  size_t parse_read(const redisReply* r) {
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
        if (k.streams[i] == sname)
          idx = i;
      auto* entries = pair->element[1];
      for (size_t i = 0; i < entries->elements; ++i)
        accept(idx, entries->element[i], 1);
      n += entries->elements;
    }
    return n;
  }

  /// Hands `to_run` to the live handler actors, least loaded first; keeps
  /// it while none lives (the supervisor is restarting them).
  void dispatch() {
    bool any = std::any_of(pool.begin(), pool.end(),
                           [](const caf::actor& a) { return a != nullptr; });
    if (to_run.empty() || !any) {
      update_leases();
      return;
    }
    // Highest priority first.
    std::stable_sort(to_run.begin(), to_run.end(),
                     [](const job_ptr& a, const job_ptr& b) {
                       return a->stream < b->stream;
                     });
    auto now = steady_clock::now();
    std::vector<job_batch> batches(pool.size());
    for (auto& j : to_run) {
      size_t best = pool.size();
      for (size_t i = 0; i < pool.size(); ++i)
        if (pool[i] &&
            (best == pool.size() || outstanding[i] < outstanding[best]))
          best = i;
      j->actor = best;
      j->actor_id = pool[best].id();
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

  /// Moves due delayed tasks, trims acknowledged entries and reclaims
  /// entries of dead workers.
  caf::error sweep(internal::connection& conn) {
    // One round trip: promote, then reclaim from each stream. Reclaims
    // more than one batch: every task of a dead worker is taken back by the
    // first sweep after its visibility timeout.
    conn.append(conn.eval(internal::script::promote, {k.delayed},
                          {cfg.name_space, "1000", internal::group_name}));
    auto count = std::to_string(std::max<size_t>(cfg.batch_size, 64));
    auto idle = std::to_string(cfg.visibility_timeout.count());
    for (int s = 0; s < 3; ++s)
      conn.append(
          conn.eval(internal::script::reclaim, {k.streams[s]},
                    {cfg.name_space, internal::group_name, name, idle, count}));
    if (auto err = conn.flush())
      return err;
    auto p = conn.next_reply();
    if (!p)
      return std::move(p.error());
    if ((*p)->type == REDIS_REPLY_ERROR)
      runtime::log(runtime::log_level::warning,
                   "queue worker: sweep failed: {}",
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
        if (inflight.count(entry) != 0 ||
            std::any_of(to_run.begin(), to_run.end(), same) ||
            std::any_of(to_finish.begin(), to_finish.end(), same))
          continue;
        ++reclaimed;
        accept(s, e, deliveries);
      }
    }
    return caf::none;
  }

  std::vector<std::string> finish_command(internal::connection& conn) {
    std::vector<std::string> argv{cfg.name_space, internal::group_name,
                                  std::to_string(cfg.result_ttl.count())};
    argv.reserve(3 + to_finish.size() * 7);
    for (auto& j : to_finish) {
      argv.push_back(j->kind);
      argv.push_back(std::to_string(j->stream));
      argv.push_back(j->entry);
      argv.push_back(j->id);
      argv.push_back(j->text);
      argv.push_back(j->key);
      if (j->kind == "retry") {
        argv.push_back(
            std::to_string(j->requeue ? j->attempt : j->attempt + 1));
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

  /// Fails `j` for a retry (or a dead letter) without waiting for its
  /// handler. What is acknowledged is a copy of the delivery: a handler
  /// still running (past its timeout) writes its outcome into `j` when it
  /// returns, maybe while (or before) the failure is sent.
  void give_up_on(job& j, std::string reason) {
    j.abandoned = true;
    auto f = std::make_shared<job>();
    static_cast<internal::delivery&>(*f) = j;
    fail(*f, std::move(reason), false);
    to_finish.push_back(std::move(f));
  }

  /// Fails the jobs handed to actor `id` (it died) or to any actor (`id`
  /// 0: the pool gave up) that it had started, for a retry. Those it had
  /// not started (queued in its mailbox behind the message that ended it)
  /// never ran and spend no attempt: they go to the next live actor, or,
  /// when the pool gave up, back to the queue with every task not yet
  /// handed out. The actor is dead when this runs, so `begun_ns` is final.
  void abandon(caf::actor_id id, const char* reason) {
    std::vector<job_ptr> unstarted;
    for (auto& [entry, j] : inflight) {
      if ((id != 0 && j->actor_id != id) || j->abandoned)
        continue;
      if (j->begun_ns.load(std::memory_order_acquire) != 0)
        give_up_on(*j, reason);
      else
        unstarted.push_back(j);
    }
    for (auto& j : unstarted)
      inflight.erase(j->entry);
    // Fresh jobs (the old ones stay with the dead actor), in the order they
    // were read, ahead of anything read since.
    sort_by_entry(unstarted);
    for (auto& j : unstarted)
      j = fresh_copy(*j);
    to_run.insert(to_run.begin(), unstarted.begin(), unstarted.end());
    if (id == 0)
      hand_back_to_run(reason);
  }

  /// At a stop's deadline: takes back every task a handler actor has not
  /// started (the actor skips it when it comes to it) and every task not
  /// yet handed out, and sends them back to the queue at the same attempt.
  /// Returns whether there were any.
  bool withdraw_unstarted() {
    std::vector<job_ptr> withdrawn;
    for (auto& [entry, j] : inflight) {
      int64_t waiting = 0;
      if (!j->abandoned && j->begun_ns.compare_exchange_strong(
                               waiting, -1, std::memory_order_acq_rel)) {
        j->abandoned = true;
        withdrawn.push_back(j);
      }
    }
    for (auto& j : withdrawn)
      inflight.erase(j->entry);
    sort_by_entry(withdrawn);
    for (auto& j : withdrawn)
      j = fresh_copy(*j);
    to_run.insert(to_run.begin(), withdrawn.begin(), withdrawn.end());
    if (to_run.empty())
      return false;
    hand_back_to_run("the worker stopped before running it");
    update_leases();
    return true;
  }

  /// A job of the same delivery, not yet started.
  static job_ptr fresh_copy(const job& j) {
    auto f = std::make_shared<job>();
    static_cast<internal::delivery&>(*f) = j;
    f->abandoned = false;
    return f;
  }

  static void sort_by_entry(std::vector<job_ptr>& xs) {
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

  /// Sends every task of `to_run` (held, never run) back to the queue as it
  /// came (same attempt, no delay), for any worker to take.
  void hand_back_to_run(const char* reason) {
    for (auto& j : to_run) {
      j->kind = "retry";
      j->text = reason;
      j->delay_ms = 0;
      j->requeue = true;
      to_finish.push_back(j);
    }
    to_run.clear();
  }

  void collect(bool& stop_now, bool& pool_gone) {
    std::vector<job_ptr> finished;
    std::vector<std::pair<size_t, caf::actor_id>> deaths;
    std::vector<std::pair<size_t, caf::actor>> started;
    {
      std::lock_guard<std::mutex> guard{mtx};
      finished.swap(done);
      deaths.swap(died);
      started.swap(fresh);
      stop_now = stopping;
      pool_gone = gave_up;
    }
    for (auto& j : finished) {
      if (j->actor < outstanding.size() && outstanding[j->actor] > 0)
        --outstanding[j->actor];
      if (j->abandoned)
        continue;
      inflight.erase(j->entry);
      to_finish.push_back(j);
    }
    // Starts first: an actor may have started and died since the last
    // look, and its successor may be there already; deaths name the actor.
    for (auto& [idx, hdl] : started) {
      pool[idx] = std::move(hdl);
      outstanding[idx] = 0;
    }
    for (auto [idx, id] : deaths) {
      ++restarts;
      runtime::log(runtime::log_level::warning,
                   "queue worker: handler actor {} died{}", idx,
                   pool_gone ? "" : "; the supervisor restarts it");
      if (idx < pool.size() && pool[idx] && pool[idx].id() == id) {
        pool[idx] = nullptr;
        outstanding[idx] = 0;
      }
      abandon(id, "handler actor died");
    }
    if (pool_gone) {
      if (!gave_up_flag.exchange(true)) {
        std::fill(pool.begin(), pool.end(), caf::actor{});
        abandon(0, "handler pool gave up");
      }
      // Nothing is read after giving up; what was, went back (abandon).
      to_run.clear();
    }
    // A task's time counts from its start, not from when it was handed to
    // a handler actor busy with others.
    auto now = internal::steady_ns();
    for (auto& [entry, j] : inflight) {
      auto begun = j->begun_ns.load(std::memory_order_acquire);
      if (!j->abandoned && j->timeout_ms > 0 && begun > 0 &&
          now - begun > j->timeout_ms * 1'000'000)
        give_up_on(*j, fmt::format("timed out after {} ms", j->timeout_ms));
    }
    for (auto& j : to_finish)
      inflight.erase(j->entry);
    if (!finished.empty() || !deaths.empty() || pool_gone)
      update_leases();
    if (!started.empty())
      dispatch();
  }

  /// Waits at most `max` for a completion or anything else to handle. A
  /// stop the reading thread already knows of (`stop_known`) is no news:
  /// the wait then ends by the stop's deadline instead, so that waiting for
  /// the last tasks of a stop sleeps rather than spins.
  void wait_for_completion(milliseconds max, bool stop_known = false) {
    std::unique_lock<std::mutex> guard{mtx};
    auto until = steady_clock::now() + max;
    if (stop_known)
      until = std::min(until, stop_deadline + milliseconds{1});
    cv.wait_until(guard, until, [&] {
      return !done.empty() || !died.empty() || !fresh.empty() || gave_up ||
             (stopping && !stop_known);
    });
  }

  /// The longest `linger` waits.
  static constexpr std::chrono::microseconds linger_max{1000};

  /// Some tasks just finished while others handed out with them still run:
  /// waits for those as long again as the first ones took (at most
  /// `linger_max`). Tasks handed out together tend to finish together (the
  /// handler actors of one read take even shares): one round trip then
  /// acknowledges them all and reads a full batch, instead of two round
  /// trips of half a batch each, each queued in Redis behind other
  /// clients' commands. Returns whether it waited.
  bool linger() {
    size_t running = 0;
    for (auto n : outstanding)
      running += n;
    steady_clock::time_point latest{};
    for (auto& j : to_finish)
      latest = std::max(latest, j->started);
    if (running == 0 || latest == steady_clock::time_point{})
      return false;
    auto now = steady_clock::now();
    auto until =
        now + std::min<steady_clock::duration>(now - latest, linger_max);
    std::unique_lock<std::mutex> guard{mtx};
    cv.wait_until(guard, until,
                  [&] { return done.size() >= running || !calm(); });
    return true;
  }

  /// The longest a read blocks in Redis.
  static constexpr milliseconds read_block_max{100};

  /// How many more entries a read may take: the batch size less the tasks
  /// running or waiting to run.
  size_t room_left() const {
    auto busy = inflight.size() + to_run.size();
    return busy < cfg.batch_size ? cfg.batch_size - busy : size_t{0};
  }

  /// Waits end by the next sweep, so that reclaiming is never late.
  milliseconds until_sweep(milliseconds most) const {
    auto left = std::chrono::duration_cast<milliseconds>(next_sweep -
                                                         steady_clock::now());
    return std::clamp(left, milliseconds{1}, most);
  }

  /// Counts the first `n` records of `to_finish` (Redis took them) and
  /// removes them; records a read added behind them stay.
  void count_finished(size_t n) {
    n = std::min(n, to_finish.size());
    for (size_t i = 0; i < n; ++i) {
      auto& kind = to_finish[i]->kind;
      if (kind == "ok")
        ++succeeded;
      else if (kind == "retry") {
        if (!to_finish[i]->requeue)
          ++retried;
      } else
        ++dead_lettered;
    }
    to_finish.erase(to_finish.begin(),
                    to_finish.begin() + static_cast<ptrdiff_t>(n));
  }

  /// The finish script's reply lists, after its count, the tasks whose
  /// effects failed: they ended dead (among the first `sent` records).
  void take_effect_failures(const redisReply* r, size_t sent) {
    if (r->type != REDIS_REPLY_ARRAY)
      return;
    for (size_t i = 1; i < r->elements; ++i) {
      auto id = internal::str(r->element[i]);
      runtime::log(runtime::log_level::warning,
                   "queue worker: an effect of task {} failed; the task is "
                   "dead-lettered",
                   id);
      for (size_t k = 0; k < std::min(sent, to_finish.size()); ++k)
        if (to_finish[k]->id == id)
          to_finish[k]->kind = "dead";
    }
  }

  /// After an error reply to the acknowledgements, takes the read's reply
  /// queued behind them, if any, so that the tasks it delivered to this
  /// worker still run (left alone they would wait for a reclaim, which
  /// counts as one more delivery), before the connection is dropped.
  void take_read_behind(size_t room) {
    if (room == 0)
      return;
    auto r = conn->next_reply();
    if (r && (*r)->type == REDIS_REPLY_ARRAY)
      parse_read(r->get());
  }

  /// Sends the acknowledgements of `to_finish` (if any) and a read of at
  /// most `room` entries (if `room` > 0; blocking while nothing runs) in one
  /// round trip, then takes both replies. Returns the number of entries
  /// read, or an error once the connection is lost.
  ///
  /// Quiet acknowledgement: when one task is acknowledged and the read
  /// blocks, the acknowledgement's reply comes at once and the read's only
  /// when a task arrives, two wake-ups of this thread per task (with two
  /// workers sharing a stream one at a time, every read blocks). When the
  /// last acknowledgement showed that, the next 32 are quiet: Redis is
  /// told to skip the acknowledgement's reply (CLIENT REPLY SKIP), and an
  /// XPENDING of the acknowledged entry follows the read: Redis runs it
  /// once the read returns, so both replies come in one write. An entry
  /// still pending means the acknowledgement failed (a script error, out
  /// of memory): it is logged and sent again with its reply, so that the
  /// error shows and is handled as any other.
  caf::expected<size_t> exchange(size_t room) {
    bool finish = !to_finish.empty();
    // A blocking read may follow the acknowledgements in the same round
    // trip: their reply comes at once, the read's when a task arrives.
    bool may_block = inflight.empty() && to_run.empty();
    // Not quiet for a task with effects: a failing effect fails its finish
    // script after the XACK, and only the script's reply tells.
    bool lone = finish && may_block && room > 0 && to_finish.size() == 1 &&
                to_finish.front()->effects.empty();
    auto sent = to_finish.size();
    bool quiet = lone && quiet_acks && !loud_ack && quiet_left > 0;
    if (quiet)
      --quiet_left;
    if (finish)
      loud_ack = false;
    if (quiet)
      conn->append({"CLIENT", "REPLY", "SKIP"});
    if (finish)
      conn->append(finish_command(*conn));
    if (room > 0) {
      std::vector<std::string> cmd{"XREADGROUP", "GROUP", internal::group_name,
                                   name,         "COUNT", std::to_string(room)};
      if (may_block) {
        cmd.emplace_back("BLOCK");
        cmd.push_back(std::to_string(until_sweep(read_block_max).count()));
      }
      cmd.emplace_back("STREAMS");
      for (auto& s : k.streams)
        cmd.push_back(s);
      for (int i = 0; i < 3; ++i)
        cmd.emplace_back(">");
      conn->append(cmd);
    }
    if (quiet) {
      auto& j = *to_finish.front();
      conn->append({"XPENDING", k.streams[j.stream], internal::group_name,
                    j.entry, j.entry, "1"});
    }
    if (auto err = conn->flush())
      return err;
    if (finish)
      call_hook(fault_point::after_effect);
    if (finish && !quiet) {
      auto r = conn->next_reply();
      if (!r)
        return std::move(r.error()); // to_finish stays; sent again later.
      if ((*r)->type == REDIS_REPLY_ERROR) {
        runtime::log(runtime::log_level::warning,
                     "queue worker: acknowledgement failed: {}",
                     internal::render(r->get()));
        take_read_behind(room);
        conn->drop();
        return caf::make_error(caf::sec::runtime_error, "ack failed");
      }
      take_effect_failures(r->get(), sent);
      count_finished(sent);
      call_hook(fault_point::after_ack);
      // The read's reply did not come with the acknowledgement's: the read
      // blocks (as when workers share the stream), and this thread woke
      // twice. Skip the next acknowledgements' replies; with a worker that
      // always finds its next task waiting there is nothing to gain, and
      // the check would cost Redis two commands per task.
      if (lone && !conn->input_buffered())
        quiet_left = 32;
    }
    if (room == 0)
      return size_t{0};
    auto r = conn->next_reply();
    if (!r)
      return std::move(r.error());
    bool check = quiet; // the XPENDING's reply is still to take
    if (quiet && (*r)->type == REDIS_REPLY_ERROR) {
      // Either CLIENT REPLY was refused (an ACL, a proxy): its error came
      // first, and the finish script's reply (always an integer), the
      // read's and the check's follow. Or the read failed: only the check's
      // reply (an array) follows.
      auto a = conn->next_reply();
      if (!a)
        return std::move(a.error()); // to_finish stays; sent again later.
      if ((*a)->type != REDIS_REPLY_INTEGER) {
        // The read failed (quiet mode is not to blame), or both failed.
        quiet_acks = (*a)->type == REDIS_REPLY_ARRAY;
        runtime::log(runtime::log_level::warning,
                     "queue worker: read failed: {}",
                     internal::render(r->get()));
        conn->drop();
        return caf::make_error(caf::sec::runtime_error, "read failed");
      }
      quiet_acks = false;
      quiet = false;
      runtime::log(runtime::log_level::warning,
                   "queue worker: CLIENT REPLY refused ({}); acknowledging "
                   "with replies",
                   internal::render(r->get()));
      count_finished(sent);
      call_hook(fault_point::after_ack);
      r = conn->next_reply();
      if (!r)
        return std::move(r.error());
    }
    if ((*r)->type == REDIS_REPLY_ERROR) {
      // NOGROUP after Redis lost its data: reconnecting recreates it.
      runtime::log(runtime::log_level::warning, "queue worker: read failed: {}",
                   internal::render(r->get()));
      conn->drop();
      return caf::make_error(caf::sec::runtime_error, "read failed");
    }
    // The read's tasks are taken before the check's reply: should that
    // fail, they still run (after the reconnect), as they are this
    // worker's now.
    auto before = to_run.size();
    auto fetched = parse_read(r->get());
    if (check) {
      auto p = conn->next_reply();
      if (!p)
        return std::move(p.error()); // to_finish stays; sent again later.
      if ((*p)->type != REDIS_REPLY_ARRAY) {
        // Out of step (a proxy answering CLIENT REPLY without skipping) or
        // XPENDING refused: acknowledge with replies from now on.
        quiet_acks = false;
        runtime::log(runtime::log_level::warning,
                     "queue worker: acknowledgement check failed: {}",
                     internal::render(p->get()));
        conn->drop();
        return caf::make_error(caf::sec::runtime_error, "ack check failed");
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
                     to_finish.front()->id);
        loud_ack = true;
      }
    }
    if (to_run.size() > before || !to_finish.empty())
      call_hook(fault_point::before_handle);
    return fetched;
  }

  // -- one task at a time on the handler actor's thread -----------------------

  // With one handler actor taking one task at a time (concurrency and batch
  // size 1), handing each task over costs three wake-ups: the actor's for
  // the task, the reading thread's for the completion, and the reading
  // thread's again for Redis's reply. Instead, the reading thread passes
  // the loop (the baton) to the actor with the task: having run it, the
  // actor sends the acknowledgement and the next read itself and hands the
  // next task to itself, one wake-up per task (Redis's reply). The task
  // still runs in its supervised actor, and the baton comes back to the
  // reading thread as soon as anything else is to be done (a sweep, a
  // timeout to watch, a stop, a death or restart, an error, an empty
  // read); a dead holder releases it in its death notice.

  /// Whether the baton may be (or stay) out: holder's state only.
  bool solo() const {
    return cfg.concurrency == 1 && cfg.batch_size == 1 && to_run.empty() &&
           to_finish.empty() && inflight.size() == 1 &&
           inflight.begin()->second->timeout_ms == 0 && conn->connected() &&
           steady_clock::now() < next_sweep;
  }

  /// Nothing for the reading thread to handle (under `mtx`).
  bool calm() const {
    return !stopping && !gave_up && died.empty() && fresh.empty();
  }

  /// Reading thread: passes the loop to the handler actor when `solo()`,
  /// and waits until it comes back. Returns whether it did.
  bool pass_baton() {
    if (!solo())
      return false;
    std::unique_lock<std::mutex> guard{mtx};
    if (!calm() || !done.empty())
      return false;
    baton_out = true;
    baton_holder = inflight.begin()->second->actor_id;
    // The holder gives the baton back after a task when anything else is
    // to be done, and its death notice takes it back. While the holder runs
    // a task (as long as that takes), the reading thread takes the baton
    // back itself when a sweep is due or anything else needs it: a task may
    // run for minutes, and neither sweeps nor a stop deadline may wait for
    // it. It then waits for the task's completion as in the regular loop.
    while (baton_out) {
      cv.wait_for(guard, until_sweep(read_block_max));
      if (baton_out && !baton_busy &&
          (steady_clock::now() >= next_sweep || !calm()))
        baton_out = false;
    }
    return true;
  }

  /// Handler actor holding the baton, `xs` run: acknowledges them, reads,
  /// and keeps the baton while `solo()` and `calm()`.
  void run_solo(const job_batch& xs) {
    for (auto& j : *xs) {
      if (outstanding[j->actor] > 0)
        --outstanding[j->actor];
      // Timed out while it ran: its failure is acknowledged already (and
      // the baton came with the next task, which is still to run).
      if (j->abandoned)
        continue;
      inflight.erase(j->entry);
      to_finish.push_back(j);
    }
    auto fetched = exchange(room_left());
    if (fetched)
      dispatch(); // To itself: runs once this handler returns.
    else
      lost = true;
    bool keep = fetched && solo();
    {
      std::lock_guard<std::mutex> guard{mtx};
      baton_busy = false;
      keep = keep && calm();
      if (!keep)
        baton_out = false;
    }
    if (!keep)
      cv.notify_one();
  }

  // -- the loop ---------------------------------------------------------------

  void read_loop() {
    conn = std::make_unique<internal::connection>(cfg, url);
    auto backoff = milliseconds{10};
    next_sweep = steady_clock::now();
    for (;;) {
      bool stop_now = false;
      bool pool_gone = false;
      collect(stop_now, pool_gone);
      if (linger())
        collect(stop_now, pool_gone);
      if (stop_now || pool_gone) {
        bool past = stop_now && steady_clock::now() > stop_deadline;
        // Tasks this worker holds but will not run go back to the queue at
        // the same attempt: at the deadline those no handler started, and
        // any read and not handed out.
        if (stop_now && !stop_handed_back && (past || inflight.empty())) {
          stop_handed_back = true;
          withdraw_unstarted();
        }
        if (inflight.empty() && to_finish.empty())
          break;
        // Past the deadline, one more pass sends what went back.
        if (past && stop_tail_sent)
          break;
        stop_tail_sent = past;
      }
      if (!conn->connected() || conn->scripts_lost()) {
        if (auto err = conn->connect()) {
          lost = true;
          std::unique_lock<std::mutex> guard{mtx};
          auto until = steady_clock::now() + backoff;
          if (stop_now)
            until = std::min(until, stop_deadline + milliseconds{1});
          cv.wait_until(guard, until, [&] { return stopping && !stop_now; });
          backoff = std::min(backoff * 2, cfg.reconnect_backoff_max);
          continue;
        }
        // One reply timeout for every command of this connection, long
        // enough for the longest blocking read.
        conn->timeout(read_block_max + cfg.io_timeout);
        if (lost)
          ++reconnects;
        lost = false;
        backoff = milliseconds{10};
      }
      bool taking = !stop_now && !pool_gone;
      if (taking && steady_clock::now() >= next_sweep) {
        next_sweep = steady_clock::now() + cfg.sweep_interval;
        auto before = to_run.size();
        if (sweep(*conn)) {
          lost = true;
          continue;
        }
        if (to_run.size() > before)
          dispatch();
      }
      auto room = room_left();
      bool read = taking && room > 0;
      if (!read && to_finish.empty()) {
        dispatch();
        // No sweep is due while stopping: the stop's deadline bounds it.
        wait_for_completion(stop_now ? milliseconds{50}
                                     : until_sweep(milliseconds{50}),
                            stop_now);
        continue;
      }
      auto fetched = exchange(read ? room : 0);
      if (!fetched) {
        lost = true;
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
      if (*fetched < room && (!inflight.empty() || !to_run.empty()))
        wait_for_completion(until_sweep(milliseconds{20}));
    }
  }

  void heartbeat_loop() {
    internal::connection conn{cfg, url};
    // Connected up front: connecting loads the scripts (several round
    // trips), which must not eat into the first lease.
    static_cast<void>(conn.connect());
    for (;;) {
      std::vector<std::pair<int, std::string>> xs;
      {
        std::unique_lock<std::mutex> guard{lease_mtx};
        if (lease_cv.wait_for(guard, cfg.heartbeat_interval,
                              [&] { return heartbeat_stop; }))
          return;
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
  if (auto err = internal::check_config(st.cfg))
    return err;
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
  if (auto err = st.spawn_pool())
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
    std::lock_guard<std::mutex> guard{st.lease_mtx};
    st.heartbeat_stop = true;
  }
  st.lease_cv.notify_all();
  if (st.heartbeat.joinable())
    st.heartbeat.join();
  caf::anon_send_exit(st.supervisor, caf::exit_reason::user_shutdown);
  st.supervisor = nullptr;
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
  std::lock_guard<std::mutex> guard{st.mtx};
  out.gave_up = st.gave_up;
  return out;
}

caf::actor worker::handler_supervisor() const {
  return impl_->supervisor;
}

} // namespace actorbus::queue
