#include "actorbus/ipc/process_pool.hpp"

#include "actorbus/actors/supervisor.hpp"
#include "actorbus/ipc/process.hpp"

#include "segment_layout.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>

namespace actorbus::ipc::detail {

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// Ends every reply of a worker: how long it computed the result, in ns (its
// own clock, so the pool's dispatch latency does not count), and what the
// reply carries.
struct reply_trailer {
  int64_t ns = 0;
  uint64_t status = 0;
};

constexpr size_t trailer_size = sizeof(reply_trailer);

// reply_trailer::status: the reply carries the task's result.
constexpr uint64_t reply_result = 0;
// reply_trailer::status: the result did not fit a frame; the reply carries
// its size (a uint64_t) instead.
constexpr uint64_t reply_too_large = 1;
// reply_trailer::status: the task threw; the reply carries the text.
constexpr uint64_t reply_threw = 2;
// reply_trailer::status: the argument did not deserialize; the reply
// carries why.
constexpr uint64_t reply_bad_argument = 3;

// The smallest max_frame that carries every reply.
constexpr size_t min_max_frame = sizeof(uint64_t) + trailer_size;

// Exit statuses of a worker. Workers are permanent children of the pool's
// supervisor, so any exit before the supervisor stops them is restarted;
// the status tells why in the supervisor's report.
constexpr int worker_lost_pool = 0;    // the pool closed the channel, or died
constexpr int worker_no_channel = 10;  // could not open its channel
constexpr int worker_send_failed = 11; // the pool took no reply for 60 s
constexpr int worker_receive_failed = 12; // a broken frame

// The worker process: answers each task frame with a reply (result or its
// size if too large, then the trailer) until the pool's process is gone or
// closes the channel, or its supervisor stops it.
int worker_main(const std::string& name, const pool_core::worker_fn& fn) {
  auto ch = channel::open(name, 5s);
  if (!ch)
    return worker_no_channel;
  const auto max_result = ch->max_frame() - trailer_size;
  std::vector<std::byte> in;
  std::vector<std::byte> out;
  for (;;) {
    if (auto err = ch->receive(in, 1s)) {
      if (err == errc::timeout)
        continue;
      if (err == errc::peer_closed || err == errc::peer_dead)
        return worker_lost_pool;
      return worker_receive_failed;
    }
    out.clear();
    auto t0 = clock_type::now();
    auto outcome = fn(in, out);
    reply_trailer trailer;
    trailer.ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                     clock_type::now() - t0)
                     .count();
    if (outcome != task_outcome::ok) {
      // A text: cut to what fits.
      trailer.status =
          outcome == task_outcome::threw ? reply_threw : reply_bad_argument;
      out.resize(std::min(out.size(), max_result));
    } else if (out.size() > max_result) {
      uint64_t size = out.size();
      out.resize(sizeof(size));
      std::memcpy(out.data(), &size, sizeof(size));
      trailer.status = reply_too_large;
    }
    auto at = out.size();
    out.resize(at + trailer_size);
    std::memcpy(out.data() + at, &trailer, trailer_size);
    if (auto err = ch->send(out, 60s))
      return err == errc::peer_closed || err == errc::peer_dead
                 ? worker_lost_pool
                 : worker_send_failed;
  }
}

// Splits the trailer off a worker's reply.
caf::error take_trailer(std::vector<std::byte>& reply, reply_trailer& out) {
  if (reply.size() < trailer_size)
    return make_error(errc::corrupt_frame, "worker reply without trailer");
  auto at = reply.size() - trailer_size;
  std::memcpy(&out, reply.data() + at, trailer_size);
  reply.resize(at);
  if (out.status == reply_result || out.status == reply_threw ||
      out.status == reply_bad_argument)
    return caf::none;
  if (out.status == reply_too_large && reply.size() == sizeof(uint64_t))
    return caf::none;
  return make_error(errc::corrupt_frame, "worker reply of unknown kind");
}

// The error of a task whose result (of the size in `reply`) did not fit.
caf::error result_too_large(std::span<const std::byte> reply,
                            size_t max_frame) {
  uint64_t size = 0;
  std::memcpy(&size, reply.data(), sizeof(size));
  return make_error(
      errc::frame_too_large,
      "the task's result of " + std::to_string(size) + " bytes exceeds the " +
          std::to_string(max_frame - trailer_size) +
          " bytes a worker can send back (channel max_frame of " +
          std::to_string(max_frame) + " less " + std::to_string(trailer_size) +
          " bytes of reply trailer)");
}

// The error of a task whose reply carries a text instead of a result.
caf::error task_failed(const reply_trailer& trailer,
                       std::span<const std::byte> reply) {
  std::string text(reinterpret_cast<const char*>(reply.data()), reply.size());
  if (trailer.status == reply_threw)
    return caf::make_error(caf::sec::runtime_error,
                           "process_pool task threw: " + text);
  return make_error(errc::corrupt_frame,
                    "a worker could not read the task's argument: " + text);
}

struct job {
  std::vector<std::byte> arg;
  pool_core::result_fn done;
  // Workers that died while running it.
  size_t crashes = 0;
};

// Fails every job in `jobs` with `err`.
void fail_all(std::deque<job>& jobs, const caf::error& err) {
  for (auto& j : jobs)
    j.done(err);
  jobs.clear();
}

// Most tasks sent ahead to one worker.
constexpr size_t max_window = 256;

// A year stands for "the pool's life" in the supervisor's intensity window.
constexpr auto forever = std::chrono::hours(24 * 365);

// Runs `f` on a thread of its own and waits for it. The pool's actor system
// is created and destroyed this way: CAF 0.17 keeps a reference to the
// logger of the last system a thread created in a thread_local of that
// thread, and releases it again when the system is destroyed there. For a
// pool in a static object that thread is the main thread at exit, whose
// thread_locals are destroyed before static objects: the logger was
// released twice and the process aborted in ~actor_system. A thread that
// lives only for the call has no such history.
template <class F>
void on_own_thread(F f) {
  std::thread{std::move(f)}.join();
}

} // namespace

struct pool_core::impl {
  // A worker's place: the supervisor's start function puts the channel of
  // each new worker process here; the slot's driver thread takes it.
  struct slot {
    std::optional<channel> fresh;
    caf::actor process;
    std::atomic<pid_t> pid{0};
    size_t starts = 0;
  };

  worker_fn fn_;
  process_pool_options opts_;
  // Ring bytes the arguments in flight to one worker may take: no more than
  // its task ring holds (the channel rounds its capacity up to a power of
  // two, at least one largest frame). Every task in that ring is in flight,
  // so a driver's send never waits for space, and it always goes on to take
  // the results its worker waits to send: with the task ring and the result
  // ring both full, each side would wait on the other until task_timeout.
  uint64_t ring_bytes_;
  std::mutex mx_; // guards everything below but the atomics
  std::condition_variable cv_;
  std::deque<job> queue_;
  bool stopping_ = false;
  caf::error gave_up_;
  std::vector<slot> slots_;
  // Channels of drivers that finished, open until the supervisor stopped
  // their workers: a worker whose channel closes exits, and would be
  // restarted.
  std::vector<channel> retired_;
  std::atomic<size_t> restarts_{0};
  std::atomic<uint64_t> counter_{0};
  std::vector<std::thread> drivers_;
  caf::actor_system_config cfg_;
  std::optional<caf::actor_system> sys_;
  caf::actor sup_;

  explicit impl(worker_fn f, process_pool_options o)
      : fn_(std::move(f))
      , opts_(o)
      , ring_bytes_(std::max<uint64_t>(
            o.channel.capacity, internal::frame_footprint(o.channel.max_frame)))
      , slots_(o.workers) {
    // The supervisor and the process actors need little: one thread, and
    // one that sleeps while workers compute. CAF's stock polling (500 sleeps
    // of 50 µs after every message, then a wake-up every 10 ms) took a
    // quarter of a core from the workers right after the pool started;
    // here the thread blocks on its condition variable after a short spin,
    // and every enqueue wakes it (it has no sibling to steal from).
    cfg_.set("scheduler.max-threads", size_t{1});
    cfg_.set("work-stealing.aggressive-poll-attempts", size_t{10});
    cfg_.set("work-stealing.moderate-poll-attempts", size_t{0});
    cfg_.set("work-stealing.relaxed-sleep-duration",
             caf::timespan{std::chrono::seconds(1)});
    cfg_.set("logger.verbosity", caf::atom("quiet"));
  }

  // The supervisor's start function of worker k: a new channel, and a
  // forked process that opens it.
  caf::expected<caf::actor> start_worker(caf::actor_system& sys, size_t k) {
    auto name = "actorbus-pool-" + std::to_string(::getpid()) + "-" +
                std::to_string(k) + "-" + std::to_string(++counter_);
    auto ch = channel::create(name, opts_.channel);
    if (!ch)
      return std::move(ch.error());
    auto spec =
        forked_process([name, f = fn_] { return worker_main(name, f); });
    spec.kill_timeout = 1s;
    auto proc = launch_process(sys, std::move(spec));
    if (!proc)
      return std::move(proc.error());
    {
      std::lock_guard guard{mx_};
      auto& s = slots_[k];
      if (s.starts++ > 0)
        ++restarts_;
      s.fresh.emplace(std::move(*ch));
      s.process = proc->actor;
      s.pid = proc->pid;
    }
    cv_.notify_all();
    return std::move(proc->actor);
  }

  caf::error start_supervisor() {
    actors::supervisor_config sc;
    sc.strategy = actors::restart_strategy::one_for_one;
    sc.max_restarts = opts_.max_restarts;
    sc.period = opts_.restart_period.count() > 0 ? opts_.restart_period
                                                 : caf::timespan{forever};
    const auto& b = opts_.restart_backoff;
    sc.backoff.min = b.min;
    sc.backoff.max = b.max;
    sc.backoff.multiplier = b.multiplier;
    sc.backoff.jitter = b.jitter;
    sc.backoff.reset_after = b.reset_after;
    for (size_t k = 0; k < slots_.size(); ++k) {
      actors::child_spec child;
      child.id = "worker-" + std::to_string(k);
      // A worker exits only when the supervisor stops it; any other exit
      // (killed, crashed, a task calling exit(0), a lost channel) is
      // restarted, so that no slot stays without a worker.
      child.restart = actors::restart_type::permanent;
      child.shutdown_timeout = 2s;
      child.start = [this, k](caf::actor_system& sys) {
        return start_worker(sys, k);
      };
      sc.children.push_back(std::move(child));
    }
    auto res = actors::spawn_supervisor(*sys_, std::move(sc));
    if (!res)
      return std::move(res.error());
    sup_ = std::move(*res);
    caf::actor_cast<caf::abstract_actor*>(sup_)->attach_functor(
        [this](const caf::error& reason) {
          std::lock_guard guard{mx_};
          if (!stopping_)
            gave_up_ = make_error(errc::peer_dead,
                                  "process pool gave up after " +
                                      std::to_string(restarts_.load()) +
                                      " restarts: " + describe(reason));
          cv_.notify_all();
        });
    return caf::none;
  }

  // Takes the slot's newest worker channel, waiting while the supervisor
  // restarts it: at most its longest backoff plus the 30 s a start may
  // take. Returns why there is none: the pool gave up or stops, or no
  // worker came in time.
  caf::error await_worker(std::unique_lock<std::mutex>& guard, size_t k,
                          std::optional<channel>& ch, pid_t& pid) {
    auto& s = slots_[k];
    auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(opts_.restart_backoff.min, opts_.restart_backoff.max) + 30s);
    if (!cv_.wait_for(guard, limit,
                      [&] { return s.fresh || gave_up_ || stopping_; }))
      return make_error(errc::timeout,
                        "worker " + std::to_string(k) +
                            " of the process pool was not replaced within " +
                            std::to_string(limit.count()) + " ms");
    if (!s.fresh)
      return gave_up_ ? gave_up_
                      : make_error(errc::peer_closed, "pool stopped");
    ch = std::move(s.fresh);
    s.fresh.reset();
    pid = s.pid;
    return caf::none;
  }

  // How many tasks worker k should have in flight: one while tasks are
  // long (or their length is still unknown); for short ones about
  // `long_task` worth of work, at least `prefetch`, so that a worker never
  // waits for the pool's thread to be scheduled (which takes milliseconds
  // on a loaded machine) yet no worker hoards more than it can finish soon.
  size_t window(std::chrono::nanoseconds typical) const {
    if (typical.count() == 0 || typical > opts_.long_task)
      return 1;
    auto fill = static_cast<size_t>(opts_.long_task / typical);
    return std::max(opts_.prefetch, std::min(fill, max_window));
  }

  // Ring bytes the argument of `j` takes.
  static uint64_t footprint(const job& j) {
    return internal::frame_footprint(j.arg.size());
  }

  // Feeds worker k: tasks in flight on its channel, results in FIFO order.
  // At most window() tasks and ring_bytes of arguments are in flight.
  void drive(size_t k) {
    std::optional<channel> ch;
    pid_t pid = 0;
    std::vector<std::byte> result;
    std::deque<job> inflight; // sent to the current worker, oldest first
    std::deque<job> fresh;    // taken from the queue, not yet sent
    uint64_t bytes = 0;       // ring bytes of the arguments of both
    std::chrono::nanoseconds typical{0}; // smoothed compute time per task
    // A task whose worker died on it once too often: it fails once the
    // worker is replaced (or the pool gives up), so that `restarts()` counts
    // that replacement when its future is ready.
    std::optional<job> doomed;
    auto fail_doomed = [&] {
      if (!doomed)
        return;
      doomed->done(make_error(errc::task_crashed,
                              "its worker process died on it " +
                                  std::to_string(opts_.max_task_attempts) +
                                  " times"));
      doomed.reset();
    };
    for (;;) {
      {
        std::unique_lock guard{mx_};
        if (inflight.empty() && !doomed)
          cv_.wait(guard, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_ && queue_.empty() && inflight.empty() && !doomed)
          break;
        auto room = window(typical);
        room -= std::min(room, inflight.size());
        // Take a fair share so that long tasks spread over all workers.
        auto share = std::max<size_t>(1, queue_.size() / slots_.size());
        // Arguments fit max_frame (run() refuses others), so the first one
        // always fits the ring.
        for (auto n = std::min(share, room); n > 0 && !queue_.empty(); --n) {
          auto need = footprint(queue_.front());
          if (bytes + need > ring_bytes_)
            break;
          bytes += need;
          fresh.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        if (auto err = ch ? caf::error{} : await_worker(guard, k, ch, pid)) {
          guard.unlock();
          fail_doomed();
          fail_all(inflight, err);
          fail_all(fresh, err);
          bytes = 0;
          continue;
        }
      }
      fail_doomed();
      caf::error err;
      while (!err && !fresh.empty()) {
        err = ch->send(fresh.front().arg, opts_.task_timeout);
        if (err == errc::frame_too_large) {
          // That task's own failure, not the worker's (run() refuses such
          // tasks before they get here).
          bytes -= footprint(fresh.front());
          fresh.front().done(std::move(err));
          fresh.pop_front();
          err = caf::none;
        } else if (!err) {
          inflight.push_back(std::move(fresh.front()));
          fresh.pop_front();
        }
      }
      reply_trailer trailer;
      if (!err && !inflight.empty()) {
        err = ch->receive(result, opts_.task_timeout);
        if (!err)
          err = take_trailer(result, trailer);
      }
      if (!err) {
        if (!inflight.empty()) {
          auto took =
              std::chrono::nanoseconds{std::max<int64_t>(trailer.ns, 1)};
          typical = typical.count() == 0 ? took : (typical * 3 + took) / 4;
          bytes -= footprint(inflight.front());
          if (trailer.status == reply_result)
            inflight.front().done(std::move(result));
          else if (trailer.status == reply_too_large)
            inflight.front().done(result_too_large(result, ch->max_frame()));
          else
            inflight.front().done(task_failed(trailer, result));
          inflight.pop_front();
          result = {};
        }
        continue;
      }
      // The worker is dead, stuck or out of protocol: have the supervisor
      // replace it (killing the process actor kills and reaps the process).
      replace_worker(k, pid);
      ch.reset();
      if (err != errc::peer_dead && err != errc::peer_closed &&
          !inflight.empty()) {
        // The oldest task overran its time (or broke the protocol).
        inflight.front().done(std::move(err));
        inflight.pop_front();
      } else if (!inflight.empty() &&
                 ++inflight.front().crashes == opts_.max_task_attempts) {
        // The worker died running the oldest task, once too often.
        doomed.emplace(std::move(inflight.front()));
        inflight.pop_front();
      }
      // Re-run the rest (they were lost with the worker) elsewhere.
      bytes = 0;
      std::lock_guard guard{mx_};
      while (!fresh.empty()) {
        queue_.push_front(std::move(fresh.back()));
        fresh.pop_back();
      }
      while (!inflight.empty()) {
        queue_.push_front(std::move(inflight.back()));
        inflight.pop_back();
      }
      cv_.notify_all();
    }
    if (ch) {
      std::lock_guard guard{mx_};
      retired_.push_back(std::move(*ch));
    }
  }

  // Kills the process actor of worker k if it still runs process `pid`.
  void replace_worker(size_t k, pid_t pid) {
    caf::actor victim;
    {
      std::lock_guard guard{mx_};
      if (slots_[k].pid == pid)
        victim = slots_[k].process;
    }
    if (victim)
      caf::anon_send_exit(victim, caf::exit_reason::kill);
  }

  // Stops the supervisor and the actor system (see on_own_thread), then
  // closes the channels of the stopped workers.
  void stop_system() {
    on_own_thread([this] {
      stop_supervisor();
      sys_.reset();
    });
    retired_.clear();
  }

  // Stops the supervisor (and with it every process actor: SIGTERM, SIGKILL
  // after kill_timeout, reaped), bounded.
  void stop_supervisor() {
    if (!sup_)
      return;
    caf::scoped_actor self{*sys_};
    self->monitor(sup_);
    self->send_exit(sup_, caf::exit_reason::user_shutdown);
    self->receive([](const caf::down_msg&) {},
                  caf::after(std::chrono::seconds(10)) >> [] {});
    sup_ = nullptr;
    for (auto& s : slots_)
      s.process = nullptr;
  }
};

pool_core::pool_core(worker_fn fn, process_pool_options opts) {
  if (opts.workers == 0)
    opts.workers = std::max(1u, std::thread::hardware_concurrency());
  opts.prefetch = std::max<size_t>(opts.prefetch, 1);
  impl_ = std::make_unique<impl>(std::move(fn), opts);
}

pool_core::~pool_core() {
  {
    std::lock_guard guard{impl_->mx_};
    impl_->stopping_ = true;
  }
  impl_->cv_.notify_all();
  for (auto& t : impl_->drivers_)
    t.join();
  impl_->stop_system();
}

caf::error pool_core::start() {
  if (impl_->opts_.channel.max_frame < min_max_frame)
    return caf::make_error(caf::sec::invalid_argument,
                           "process_pool.channel.max_frame: must be at least " +
                               std::to_string(min_max_frame) + " bytes");
  if (auto err = impl_->opts_.restart_backoff.validate())
    return caf::make_error(caf::sec::invalid_argument,
                           "process_pool.restart_" +
                               (err.context().match_elements<std::string>()
                                    ? err.context().get_as<std::string>(0)
                                    : std::string{"backoff: invalid"}));
  caf::error err;
  on_own_thread([this, &err] {
    impl_->sys_.emplace(impl_->cfg_);
    err = impl_->start_supervisor();
  });
  if (err)
    return err;
  // The supervisor starts the workers in order; wait (bounded) for all.
  {
    std::unique_lock guard{impl_->mx_};
    auto all_up = [&] {
      for (auto& s : impl_->slots_)
        if (s.starts == 0)
          return false;
      return true;
    };
    if (!impl_->cv_.wait_for(guard, 30s,
                             [&] { return all_up() || impl_->gave_up_; })) {
      guard.unlock();
      impl_->stop_system();
      return make_error(errc::timeout, "process pool workers did not start");
    }
    if (impl_->gave_up_) {
      err = impl_->gave_up_;
      guard.unlock();
      impl_->stop_system();
      return err;
    }
  }
  for (size_t k = 0; k < impl_->slots_.size(); ++k)
    impl_->drivers_.emplace_back([this, k] { impl_->drive(k); });
  return caf::none;
}

namespace {

// The error of a task whose argument no channel carries.
caf::error argument_too_large(size_t size, size_t max_frame) {
  return make_error(errc::frame_too_large,
                    "the task's argument of " + std::to_string(size) +
                        " bytes exceeds the channel max_frame of " +
                        std::to_string(max_frame) + " bytes");
}

} // namespace

void pool_core::run(std::vector<std::vector<std::byte>> tasks, done_fn done) {
  if (tasks.empty())
    return;
  std::mutex done_mx;
  std::condition_variable done_cv;
  size_t remaining = tasks.size();
  auto finish = [&](size_t i, caf::expected<std::vector<std::byte>> r) {
    done(i, std::move(r));
    std::lock_guard g{done_mx};
    if (--remaining == 0)
      done_cv.notify_all();
  };
  if (impl_->drivers_.empty()) { // start() failed: fail rather than hang
    for (size_t i = 0; i < tasks.size(); ++i)
      finish(i, make_error(errc::peer_dead, "process pool did not start"));
    return;
  }
  // A task that no channel carries fails here, before any worker sees it.
  const auto max_frame = impl_->opts_.channel.max_frame;
  std::vector<std::pair<size_t, size_t>> refused; // index, size
  {
    std::lock_guard guard{impl_->mx_};
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (tasks[i].size() > max_frame) {
        refused.emplace_back(i, tasks[i].size());
        continue;
      }
      impl_->queue_.push_back(
          job{std::move(tasks[i]),
              [&finish, i](caf::expected<std::vector<std::byte>> r) {
                finish(i, std::move(r));
              }});
    }
  }
  impl_->cv_.notify_all();
  for (auto [i, size] : refused)
    finish(i, argument_too_large(size, max_frame));
  // Every task ends: each wait of a driver is bounded (task_timeout, the
  // wait for a replaced worker) and so are restarts (max_restarts).
  std::unique_lock guard{done_mx};
  done_cv.wait(guard, [&] { return remaining == 0; });
}

void pool_core::submit(std::vector<std::byte> task, result_fn done) {
  if (impl_->drivers_.empty())
    return done(make_error(errc::peer_dead, "process pool did not start"));
  const auto max_frame = impl_->opts_.channel.max_frame;
  if (task.size() > max_frame)
    return done(argument_too_large(task.size(), max_frame));
  {
    std::lock_guard guard{impl_->mx_};
    impl_->queue_.push_back(job{std::move(task), std::move(done)});
  }
  impl_->cv_.notify_all();
}

size_t pool_core::size() const noexcept {
  return impl_->slots_.size();
}

size_t pool_core::restarts() const noexcept {
  return impl_->restarts_.load();
}

std::vector<pid_t> pool_core::worker_pids() const {
  std::vector<pid_t> result;
  for (auto& s : impl_->slots_)
    result.push_back(s.pid.load());
  return result;
}

} // namespace actorbus::ipc::detail
