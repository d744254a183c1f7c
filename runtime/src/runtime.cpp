#include "actorbus/runtime/runtime.hpp"

#include "actorbus/runtime/log.hpp"

#include <caf/actor_registry.hpp>
#include <caf/send.hpp>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <thread>
#include <vector>

namespace actorbus::runtime {

namespace {

using clock_type = std::chrono::steady_clock;

// Actor systems abandoned by a bounded shutdown, process-wide. They are
// parked here, never destroyed: CAF's actor_system destructor waits for
// thread-local logger references held by every thread that touched it, so it
// can only run on the owning thread once the system is idle, and that thread
// has moved on. Their idle worker threads end with the process.
struct parked_systems {
  std::mutex mtx;
  std::vector<std::pair<std::unique_ptr<runtime_config>,
                        std::unique_ptr<caf::actor_system>>>
      systems;

  static parked_systems& instance() {
    static auto* global = new parked_systems; // reachable, never destroyed
    return *global;
  }
};

// Waits until `pred` holds or the deadline passes, polling CAF state that
// offers no timed wait of its own.
template <class Predicate>
bool poll_until(clock_type::time_point deadline, Predicate pred) {
  while (!pred()) {
    if (clock_type::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

} // namespace

struct runtime::tracking {
  std::mutex mtx;
  std::condition_variable cv;
  std::unordered_map<caf::actor_id, caf::actor_addr> actors;

  std::size_t size() {
    std::lock_guard guard{mtx};
    return actors.size();
  }

  bool await_empty(clock_type::time_point deadline) {
    std::unique_lock guard{mtx};
    return cv.wait_until(guard, deadline, [&] { return actors.empty(); });
  }

  std::vector<caf::actor> live() {
    std::vector<caf::actor> result;
    std::lock_guard guard{mtx};
    for (auto& kvp : actors)
      if (auto hdl = caf::actor_cast<caf::actor>(kvp.second))
        result.push_back(std::move(hdl));
    return result;
  }
};

runtime::runtime(runtime_config cfg)
    : cfg_(std::make_unique<runtime_config>(std::move(cfg)))
    , tracking_(std::make_shared<tracking>()) {
  std::signal(SIGPIPE, SIG_IGN);
  logger::instance().level(cfg_->min_log_level());
  system_ = std::make_unique<caf::actor_system>(*cfg_);
}

runtime::~runtime() {
  shutdown();
}

void runtime::track(const caf::actor& who) {
  if (!who)
    return;
  {
    std::lock_guard guard{tracking_->mtx};
    tracking_->actors.emplace(who.id(), who.address());
  }
  std::weak_ptr<tracking> weak = tracking_;
  who->attach_functor([weak, id = who.id()](const caf::error&) {
    if (auto tr = weak.lock()) {
      std::lock_guard guard{tr->mtx};
      tr->actors.erase(id);
      tr->cv.notify_all();
    }
  });
}

std::size_t runtime::tracked() const {
  return tracking_->size();
}

shutdown_report runtime::shutdown() {
  return shutdown(cfg_->shutdown_timeout());
}

shutdown_report runtime::shutdown(caf::timespan deadline) {
  std::lock_guard guard{shutdown_mtx_};
  if (shut_down_)
    return report_;
  shut_down_ = true;
  accepting_.store(false, std::memory_order_release);
  auto start = clock_type::now();
  auto exit_deadline = start + deadline;
  // Killed actors normally finish within a scheduler round; a handler that
  // blocks its thread never does, so the wait for them is short.
  auto kill_grace =
      std::min<clock_type::duration>(deadline, std::chrono::milliseconds(200));
  names_.clear();
  // 1. Ask every tracked actor to exit and let it drain until the deadline.
  auto actors = tracking_->live();
  auto initial = actors.size();
  for (auto& hdl : actors)
    caf::anon_send_exit(hdl, caf::exit_reason::user_shutdown);
  actors.clear();
  tracking_->await_empty(exit_deadline);
  report_.exited = initial - std::min(initial, tracking_->size());
  // 2. Kill those that ignored it.
  auto stubborn = tracking_->live();
  auto to_kill = stubborn.size();
  for (auto& hdl : stubborn)
    caf::anon_send_exit(hdl, caf::exit_reason::kill);
  stubborn.clear();
  tracking_->await_empty(clock_type::now() + kill_grace);
  auto left = tracking_->size();
  report_.killed = to_kill - std::min(to_kill, left);
  // 3. Wait for the rest of the system (untracked actors) within the grace
  //    period, or abandon it to a reaper so that shutdown stays bounded.
  auto& reg = system_->registry();
  auto done = poll_until(clock_type::now() + kill_grace,
                         [&] { return reg.running() == 0; });
  if (done) {
    system_.reset();
  } else {
    report_.abandoned = std::max(left, reg.running());
    log(log_level::warning,
        "shutdown: {} actor(s) did not exit within the deadline; abandoning "
        "the actor system",
        report_.abandoned);
    auto& parked = parked_systems::instance();
    std::lock_guard parked_guard{parked.mtx};
    parked.systems.emplace_back(std::move(cfg_), std::move(system_));
    // config() must stay valid for the caller: keep a fresh default.
    cfg_ = std::make_unique<runtime_config>();
  }
  report_.elapsed = clock_type::now() - start;
  return report_;
}

bool runtime::await_abandoned(caf::timespan timeout) {
  auto& parked = parked_systems::instance();
  return poll_until(clock_type::now() + timeout, [&] {
    std::lock_guard guard{parked.mtx};
    for (auto& entry : parked.systems)
      if (entry.second->registry().running() != 0)
        return false;
    return true;
  });
}

} // namespace actorbus::runtime
