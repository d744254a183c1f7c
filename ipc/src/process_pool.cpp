#include "actorbus/ipc/process_pool.hpp"

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <optional>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace actorbus::ipc::detail {

namespace {

using namespace std::chrono_literals;

// Reaps `pid`, killing it if it has not exited within `grace`.
void reap(pid_t pid, std::chrono::milliseconds grace) {
  if (pid <= 0)
    return;
  auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return;
    }
    std::this_thread::sleep_for(1ms);
  }
}

// The worker process: answers task frames until told to stop (an empty
// frame) or until the pool's process is gone.
[[noreturn]] void worker_main(const std::string& name,
                              const pool_core::worker_fn& fn) {
  auto ch = channel::open(name, 5s);
  if (!ch)
    ::_exit(10);
  std::vector<std::byte> in;
  std::vector<std::byte> out;
  for (;;) {
    if (auto err = ch->receive(in, 1s)) {
      if (err == errc::timeout)
        continue;
      ::_exit(0); // the pool closed or died
    }
    if (in.empty())
      ::_exit(0);
    out.clear();
    fn(in, out);
    if (ch->send(out, 60s))
      ::_exit(0);
  }
}

struct job {
  std::vector<std::byte> arg;
  std::function<void(caf::expected<std::vector<std::byte>>)> done;
};

} // namespace

struct pool_core::impl {
  worker_fn fn;
  process_pool_options opts;
  std::mutex mx;
  std::condition_variable cv;
  std::deque<job> queue;
  bool stopping = false;
  std::atomic<size_t> restarts{0};
  std::atomic<uint64_t> counter{0};
  std::vector<std::thread> drivers;
  std::vector<std::atomic<pid_t>> pids;
  // Backoff state, shared by all drivers.
  std::chrono::steady_clock::time_point last_restart{};
  std::chrono::milliseconds next_delay{0};

  explicit impl(worker_fn f, process_pool_options o)
      : fn(std::move(f))
      , opts(o)
      , pids(o.workers) {}

  // Creates the channel and forks a worker; the channel's owner stays here.
  caf::expected<channel> spawn(size_t k, pid_t& pid) {
    auto name = "actorbus-pool-" + std::to_string(::getpid()) + "-" +
                std::to_string(k) + "-" + std::to_string(++counter);
    auto ch = channel::create(name, opts.channel);
    if (!ch)
      return ch;
    pid = ::fork();
    if (pid < 0)
      return make_error(errc::system_error, "fork failed");
    if (pid == 0)
      worker_main(name, fn);
    pids[k] = pid;
    return ch;
  }

  // Waits before a restart, doubling the delay for restarts in a burst.
  std::chrono::milliseconds backoff() {
    std::lock_guard guard{mx};
    auto now = std::chrono::steady_clock::now();
    if (now - last_restart > 1s)
      next_delay = opts.restart_delay;
    else
      next_delay = std::min(std::max(next_delay * 2, opts.restart_delay),
                            opts.max_restart_delay);
    last_restart = now;
    return next_delay;
  }

  // Fails every job in `jobs` with `err`.
  static void fail_all(std::deque<job>& jobs, const caf::error& err) {
    for (auto& j : jobs)
      j.done(err);
    jobs.clear();
  }

  // Feeds worker k: up to `prefetch` tasks in flight on its channel (so the
  // worker never idles waiting for the next one), results in FIFO order.
  void drive(size_t k, std::optional<channel> ch, pid_t pid) {
    std::vector<std::byte> result;
    std::deque<job> inflight; // sent to the current worker, oldest first
    std::deque<job> fresh;    // taken from the queue, not yet sent
    for (;;) {
      {
        std::unique_lock guard{mx};
        if (inflight.empty())
          cv.wait(guard, [&] { return stopping || !queue.empty(); });
        if (stopping && queue.empty() && inflight.empty())
          break;
        // Take a fair share so that long tasks spread over all workers.
        auto share = std::max<size_t>(1, queue.size() / pids.size());
        auto room = opts.prefetch - std::min(opts.prefetch, inflight.size());
        for (auto n = std::min(share, room); n > 0 && !queue.empty(); --n) {
          fresh.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      if (!ch) {
        if (restarts >= opts.max_restarts) {
          auto err =
              make_error(errc::peer_dead, "process pool gave up after " +
                                              std::to_string(restarts.load()) +
                                              " restarts");
          fail_all(inflight, err);
          fail_all(fresh, err);
          continue;
        }
        std::this_thread::sleep_for(backoff());
        ++restarts;
        auto spawned = spawn(k, pid);
        if (!spawned) {
          fail_all(fresh, spawned.error());
          continue;
        }
        ch.emplace(std::move(*spawned));
      }
      caf::error err;
      while (!err && !fresh.empty()) {
        err = ch->send(fresh.front().arg, opts.task_timeout);
        if (!err) {
          inflight.push_back(std::move(fresh.front()));
          fresh.pop_front();
        }
      }
      if (!err && !inflight.empty())
        err = ch->receive(result, opts.task_timeout);
      if (!err) {
        if (!inflight.empty()) {
          inflight.front().done(std::move(result));
          inflight.pop_front();
          result = {};
        }
        continue;
      }
      // The worker is dead, stuck or out of protocol: replace it.
      ::kill(pid, SIGKILL);
      ch.reset();
      reap(pid, 1s);
      pids[k] = 0;
      if (err != errc::peer_dead && err != errc::peer_closed &&
          !inflight.empty()) {
        // The oldest task overran its time (or broke the protocol).
        inflight.front().done(std::move(err));
        inflight.pop_front();
      }
      // Re-run the rest (they were lost with the worker) elsewhere.
      std::lock_guard guard{mx};
      while (!fresh.empty()) {
        queue.push_front(std::move(fresh.back()));
        fresh.pop_back();
      }
      while (!inflight.empty()) {
        queue.push_front(std::move(inflight.back()));
        inflight.pop_back();
      }
      cv.notify_all();
    }
    if (ch) {
      (void)ch->send({}, 100ms); // the STOP message
      ch.reset();
      reap(pid, 1s);
    }
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
    std::lock_guard guard{impl_->mx};
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  for (auto& t : impl_->drivers)
    t.join();
}

caf::error pool_core::start() {
  // Fork every worker before the first driver thread exists.
  std::vector<std::pair<channel, pid_t>> started;
  for (size_t k = 0; k < impl_->opts.workers; ++k) {
    pid_t pid = 0;
    auto ch = impl_->spawn(k, pid);
    if (!ch) {
      for (auto& [c, p] : started) {
        c.close();
        reap(p, 1s);
      }
      return std::move(ch.error());
    }
    started.emplace_back(std::move(*ch), pid);
  }
  for (size_t k = 0; k < started.size(); ++k) {
    auto pid = started[k].second;
    impl_->drivers.emplace_back([this, k, pid,
                                 ch = std::make_shared<channel>(
                                     std::move(started[k].first))]() mutable {
      impl_->drive(k, std::optional<channel>{std::move(*ch)}, pid);
    });
  }
  return caf::none;
}

void pool_core::run(std::vector<std::vector<std::byte>> tasks, done_fn done) {
  if (tasks.empty())
    return;
  std::mutex done_mx;
  std::condition_variable done_cv;
  size_t remaining = tasks.size();
  {
    std::lock_guard guard{impl_->mx};
    for (size_t i = 0; i < tasks.size(); ++i) {
      impl_->queue.push_back(job{
          std::move(tasks[i]), [&, i](caf::expected<std::vector<std::byte>> r) {
            done(i, std::move(r));
            std::lock_guard g{done_mx};
            if (--remaining == 0)
              done_cv.notify_all();
          }});
    }
  }
  impl_->cv.notify_all();
  // Every task ends: it has a timeout and restarts are bounded.
  std::unique_lock guard{done_mx};
  done_cv.wait(guard, [&] { return remaining == 0; });
}

size_t pool_core::size() const noexcept {
  return impl_->opts.workers;
}

size_t pool_core::restarts() const noexcept {
  return impl_->restarts.load();
}

std::vector<pid_t> pool_core::worker_pids() const {
  std::vector<pid_t> result;
  for (auto& p : impl_->pids)
    result.push_back(p.load());
  return result;
}

} // namespace actorbus::ipc::detail
