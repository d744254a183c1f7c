#pragma once

// Internal: the state of a `queue::worker` and the parts that work on it,
// one file each: the reader loop (worker_read.cpp), acknowledgement
// batching (worker_ack.cpp), sweep and reclaim (worker_sweep.cpp), the lease
// heartbeat (worker_lease.cpp) and handler supervision
// (worker_handlers.cpp); worker.cpp holds the public members.

#include "actorbus/actors/supervisor.hpp"
#include "actorbus/queue/detail/worker_hooks.hpp"
#include "actorbus/queue/embedded_redis.hpp"
#include "actorbus/queue/error.hpp"
#include "actorbus/queue/worker.hpp"
#include "actorbus/runtime/log.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "options.hpp"
#include "redis.hpp"

#include <caf/actor_cast.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/sec.hpp>
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
  runtime::backoff backoff{.min = caf::timespan{0}, .max = caf::timespan{0}};
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

using detail::fault_point;
using internal::job;
using internal::job_batch;
using internal::job_ptr;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

struct worker::impl : std::enable_shared_from_this<worker::impl> {
  impl(runtime::runtime& r, queue_config c)
      : rt_(r)
      , cfg_(std::move(c))
      , k_(cfg_.name_space) {
    if (cfg_.heartbeat_interval.count() <= 0)
      cfg_.heartbeat_interval =
          std::max(caf::timespan{milliseconds{1}},
                   caf::timespan{cfg_.visibility_timeout / 3});
    cfg_.batch_size = std::max<size_t>(cfg_.batch_size, 1);
    cfg_.concurrency = std::max<size_t>(cfg_.concurrency, 1);
    char host[64] = {0};
    gethostname(host, sizeof host - 1);
    static std::atomic<int> seq{0};
    name_ = fmt::format("{}-{}-{}", host, getpid(), ++seq);
  }

  runtime::runtime& rt_;
  queue_config cfg_;
  internal::keys k_;
  std::string url_;
  std::shared_ptr<embedded_redis> embedded_;
  std::string name_;
  std::unordered_map<std::string, task_handler> handlers_;
  std::function<void(fault_point)> hook_;

  // The supervisor of the handler actors; its children are the slots of
  // `pool` (reading thread only, after start; a null handle while the
  // supervisor restarts the slot's actor).
  caf::actor supervisor_;
  std::vector<caf::actor> pool_;
  std::vector<size_t> outstanding_;

  // Completions, deaths and (re)starts of handler actors, pushed by the
  // actors and the supervisor.
  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<job_ptr> done_;
  std::vector<std::pair<size_t, caf::actor_id>> died_;
  std::vector<std::pair<size_t, caf::actor>> fresh_;
  bool gave_up_ = false;
  bool stopping_ = false;
  steady_clock::time_point stop_deadline_;
  // The loop's state (everything below "reading thread") belongs to
  // whoever holds the baton: the reading thread, or the handler actor
  // `baton_holder` while `baton_out` (see `pass_baton`).
  bool baton_out_ = false;
  caf::actor_id baton_holder_ = 0;
  // The holder is using the loop's state (acknowledging and reading, in
  // `run_solo`): the reading thread cannot take the baton back meanwhile.
  bool baton_busy_ = false;

  // Entries whose lease the heartbeat renews. The heartbeat thread waits
  // on its own condition variable: a completion wakes only the reading
  // thread (one wake-up per task less).
  std::mutex lease_mtx_;
  std::condition_variable lease_cv_;
  std::vector<std::pair<int, std::string>> leased_;
  bool heartbeat_stop_ = false;

  std::thread reader_;
  std::thread heartbeat_;
  bool started_ = false;

  std::atomic<uint64_t> succeeded_{0};
  std::atomic<uint64_t> retried_{0};
  std::atomic<uint64_t> dead_lettered_{0};
  std::atomic<uint64_t> reclaimed_{0};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> restarts_{0};
  std::atomic<bool> gave_up_flag_{false};

  // -- handler actors ---------------------------------------------------------

  void run_batch(const job_batch& xs, caf::actor_id actor);

  void run_job(const job_ptr& j);

  /// Whether a handler's error sends its task to the dead tasks at once.
  static bool permanent(const caf::error& err);

  /// Records a failed attempt of `j`: a retry after its backoff, or dead.
  static void fail(job& j, std::string reason, bool permanent);

  static caf::behavior handler_actor(caf::event_based_actor* actor,
                                     std::shared_ptr<impl> self);

  /// Starts the actor of slot `idx` (called by the supervisor, also for
  /// restarts) and tells the reading thread about it.
  static caf::expected<caf::actor>
  start_handler(caf::actor_system& sys, const std::weak_ptr<impl>& weak,
                size_t idx);

  caf::error spawn_pool();

  // -- reading thread ---------------------------------------------------------

  std::unique_ptr<internal::connection> conn_;
  steady_clock::time_point next_sweep_;
  bool lost_ = false;
  std::unordered_map<std::string, job_ptr> inflight_;
  std::vector<job_ptr> to_finish_;
  // Whether `exchange` may skip an acknowledgement's reply (until Redis
  // refuses CLIENT REPLY); how many more lone acknowledgements skip it
  // before one takes its reply again to see whether reads still block; and
  // whether the next one must take its reply (it is sent again after a
  // quiet one was not applied, and its error is to be seen).
  bool quiet_acks_ = true;
  int quiet_left_ = 0;
  bool loud_ack_ = false;
  // Read or reclaimed, not yet handed to a handler actor.
  std::vector<job_ptr> to_run_;
  // A stop has handed back the tasks this worker will not run; its last
  // pass (sending them) has begun.
  bool stop_handed_back_ = false;
  bool stop_tail_sent_ = false;

  void update_leases();

  void call_hook(fault_point p);

  /// Turns one stream entry into a job to run or a record to finish.
  void accept(int stream, const redisReply* e, uint64_t deliveries);

  /// Returns the number of entries read.
  size_t parse_read(const redisReply* r);

  /// Hands `to_run` to the live handler actors, least loaded first; keeps
  /// it while none lives (the supervisor is restarting them).
  void dispatch();

  /// Moves due delayed tasks, trims acknowledged entries and reclaims
  /// entries of dead workers.
  caf::error sweep(internal::connection& conn);

  std::vector<std::string> finish_command(internal::connection& conn);

  /// Fails `j` for a retry (or a dead letter) without waiting for its
  /// handler. What is acknowledged is a copy of the delivery: a handler
  /// still running (past its timeout) writes its outcome into `j` when it
  /// returns, maybe while (or before) the failure is sent.
  void give_up_on(job& j, std::string reason);

  /// Fails the jobs handed to actor `id` (it died) or to any actor (`id`
  /// 0: the pool gave up) that it had started, for a retry. Those it had
  /// not started (queued in its mailbox behind the message that ended it)
  /// never ran and spend no attempt: they go to the next live actor, or,
  /// when the pool gave up, back to the queue with every task not yet
  /// handed out. The actor is dead when this runs, so `begun_ns` is final.
  void abandon(caf::actor_id id, const char* reason);

  /// At a stop's deadline: takes back every task a handler actor has not
  /// started (the actor skips it when it comes to it) and every task not
  /// yet handed out, and sends them back to the queue at the same attempt.
  /// Returns whether there were any.
  bool withdraw_unstarted();

  /// A job of the same delivery, not yet started.
  static job_ptr fresh_copy(const job& j);

  static void sort_by_entry(std::vector<job_ptr>& xs);

  /// Sends every task of `to_run` (held, never run) back to the queue as it
  /// came (same attempt, no delay), for any worker to take.
  void hand_back_to_run(const char* reason);

  void collect(bool& stop_now, bool& pool_gone);

  /// Waits at most `max` for a completion or anything else to handle. A
  /// stop the reading thread already knows of (`stop_known`) is no news:
  /// the wait then ends by the stop's deadline instead, so that waiting for
  /// the last tasks of a stop sleeps rather than spins.
  void wait_for_completion(milliseconds max, bool stop_known = false);

  /// The longest `linger` waits.
  static constexpr std::chrono::microseconds linger_max{1000};

  /// Some tasks just finished while others handed out with them still run:
  /// waits for those as long again as the first ones took (at most
  /// `linger_max`). Tasks handed out together tend to finish together (the
  /// handler actors of one read take even shares): one round trip then
  /// acknowledges them all and reads a full batch, instead of two round
  /// trips of half a batch each, each queued in Redis behind other
  /// clients' commands. Returns whether it waited.
  bool linger();

  /// The longest a read blocks in Redis.
  static constexpr milliseconds read_block_max{100};

  /// How many more entries a read may take: the batch size less the tasks
  /// running or waiting to run.
  size_t room_left() const;

  /// Waits end by the next sweep, so that reclaiming is never late.
  milliseconds until_sweep(milliseconds most) const;

  /// Counts the first `n` records of `to_finish` (Redis took them) and
  /// removes them; records a read added behind them stay.
  void count_finished(size_t n);

  /// The finish script's reply lists, after its count, the tasks whose
  /// effects failed: they ended dead (among the first `sent` records).
  void take_effect_failures(const redisReply* r, size_t sent);

  /// After an error reply to the acknowledgements, takes the read's reply
  /// queued behind them, if any, so that the tasks it delivered to this
  /// worker still run (left alone they would wait for a reclaim, which
  /// counts as one more delivery), before the connection is dropped.
  void take_read_behind(size_t room);

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
  caf::expected<size_t> exchange(size_t room);

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
  bool solo() const;

  /// Nothing for the reading thread to handle (under `mtx`).
  bool calm() const;

  /// Reading thread: passes the loop to the handler actor when `solo()`,
  /// and waits until it comes back. Returns whether it did.
  bool pass_baton();

  /// Handler actor holding the baton, `xs` run: acknowledges them, reads,
  /// and keeps the baton while `solo()` and `calm()`.
  void run_solo(const job_batch& xs);

  // -- the loop ---------------------------------------------------------------

  void read_loop();

  void heartbeat_loop();
};

} // namespace actorbus::queue
