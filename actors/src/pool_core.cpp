#include "pool_core.hpp"

#include "actorbus/runtime/runtime.hpp"

#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>

#include <iterator>
#include <utility>

namespace actorbus::actors {

namespace detail {

std::optional<std::string> check_config(std::string_view component,
                                        const pool_config& cfg) {
  auto bad = [&](const char* field, const char* why) {
    return std::string{component} + "." + field + ": " + why;
  };
  if (cfg.workers < 1)
    return bad("workers", "must be at least 1");
  if (cfg.max_task_attempts < 1)
    return bad("max_task_attempts", "must be at least 1");
  if (cfg.block_timeout.count() < 0)
    return bad("block_timeout", "must not be negative");
  if (cfg.shutdown_timeout.count() < 0)
    return bad("shutdown_timeout", "must not be negative");
  switch (cfg.on_full) {
  case runtime::overload_policy::block:
  case runtime::overload_policy::fail:
  case runtime::overload_policy::drop_newest:
  case runtime::overload_policy::drop_oldest:
    break;
  default:
    return bad("on_full", "unknown overload_policy");
  }
  if (cfg.on_crash != crash_policy::retry && cfg.on_crash != crash_policy::fail)
    return bad("on_crash", "unknown crash_policy");
  return std::nullopt;
}

caf::error bad_config(std::string context) {
  return caf::make_error(caf::sec::invalid_argument, std::move(context));
}

void fail_all(std::vector<item_ptr>& xs, const caf::error& err) {
  for (auto& x : xs)
    x->fail(err);
  xs.clear();
}

pool_core::pool_core(const char* component, caf::actor_system& sys,
                     runtime::runtime* rt, const pool_config& cfg)
    : component_(component)
    , sys_(sys)
    , rt_(rt)
    , cfg_(cfg)
    , target_(cfg.workers) {}

pool_core::~pool_core() = default;

// -- control ------------------------------------------------------------------

caf::error pool_core::resize(std::size_t n) {
  if (n < 1)
    return caf::make_error(caf::sec::invalid_argument,
                           std::string{component_} +
                               ".resize: at least one worker");
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_)
      return closed_error();
    target_ = n;
  }
  rebalance();
  return caf::error{};
}

bool pool_core::wait_for_workers(std::size_t n, caf::timespan timeout) {
  std::unique_lock<std::mutex> guard{mtx_};
  return state_cv_.wait_for(guard, timeout,
                            [&] { return workers_locked() == n; });
}

caf::error pool_core::shutdown(const shutdown_options& opts) {
  std::vector<item_ptr> cancelled;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    closed_ = true;
    // On every call: a later shutdown may cancel what an earlier one left.
    if (opts.cancel_pending) {
      cancelled.assign(std::make_move_iterator(queue_.begin()),
                       std::make_move_iterator(queue_.end()));
      queue_.clear();
    }
  }
  room_cv_.notify_all();
  state_cv_.notify_all();
  fail_all(cancelled, caf::make_error(caf::sec::request_receiver_down,
                                      std::string{component_} +
                                          ": cancelled by shutdown"));
  rebalance();
  if (!opts.wait)
    return caf::error{};
  std::unique_lock<std::mutex> guard{mtx_};
  if (state_cv_.wait_for(guard, opts.timeout, [this] {
        return queue_.empty() && workers_locked() == 0;
      }))
    return caf::error{};
  std::vector<item_ptr> left(std::make_move_iterator(queue_.begin()),
                             std::make_move_iterator(queue_.end()));
  queue_.clear();
  guard.unlock();
  auto late = caf::make_error(caf::sec::request_timeout,
                              std::string{component_} + ": shutdown timed out");
  fail_all(left, late);
  rebalance();
  return late;
}

caf::error pool_core::shutdown_default() {
  shutdown_options opts;
  opts.timeout = cfg_.shutdown_timeout;
  return shutdown(opts);
}

void pool_core::close_by_exit() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_)
      return;
    closed_ = true;
    if (rt_)
      cancel_at_ =
          std::chrono::steady_clock::now() +
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
              rt_->config().shutdown_timeout());
  }
  room_cv_.notify_all();
  state_cv_.notify_all();
  rebalance();
}

pool_stats pool_core::stats() const {
  std::lock_guard<std::mutex> guard{mtx_};
  pool_stats s;
  s.workers = workers_locked();
  s.target = target_;
  s.queued = queue_.size();
  s.completed = completed_.load(std::memory_order_relaxed);
  s.crashes = crashes_;
  s.replaced = replaced_;
  s.retried = retried_;
  s.dropped = dropped_;
  return s;
}

bool pool_core::kill_one_worker() {
  caf::actor victim;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    victim = census_locked().second;
  }
  if (!victim)
    return false;
  caf::anon_send_exit(victim, caf::exit_reason::kill);
  return true;
}

// -- building blocks ----------------------------------------------------------

pool_core::admission pool_core::admit_locked(item_ptr& x, caf::error& err,
                                             item_ptr& evicted) {
  if (closed_) {
    err = closed_error();
    return admission::refused;
  }
  if (cfg_.queue_capacity == 0 || queue_.size() < cfg_.queue_capacity) {
    queue_.push_back(std::move(x));
    return admission::queued;
  }
  using runtime::overload_policy;
  switch (cfg_.on_full) {
  case overload_policy::block:
    return admission::wait;
  case overload_policy::fail:
    err = caf::make_error(caf::sec::unavailable_or_would_block,
                          std::string{component_} + ": queue full");
    return admission::refused;
  case overload_policy::drop_newest:
    ++dropped_;
    err = caf::make_error(caf::sec::unavailable_or_would_block,
                          std::string{component_} +
                              ": dropped, the queue was full (drop_newest)");
    return admission::refused;
  case overload_policy::drop_oldest:
    ++dropped_;
    evicted = std::move(queue_.front());
    queue_.pop_front();
    queue_.push_back(std::move(x));
    return admission::queued;
  }
  err = closed_error();
  return admission::refused;
}

bool pool_core::room_or_closed_locked() const {
  return closed_ || cfg_.queue_capacity == 0 ||
         queue_.size() < cfg_.queue_capacity;
}

caf::error pool_core::no_room_in_time() const {
  return caf::make_error(caf::sec::request_timeout,
                         std::string{component_} +
                             ": no room in the queue in time");
}

caf::error pool_core::closed_error() const {
  return caf::make_error(caf::sec::request_receiver_down,
                         std::string{component_} + ": shut down");
}

bool pool_core::requeue_locked(item_ptr& x) {
  if (closed_ || cfg_.on_crash != crash_policy::retry ||
      x->runs >= cfg_.max_task_attempts)
    return false;
  ++retried_;
  queue_.push_front(std::move(x));
  return true;
}

caf::error pool_core::crash_error(const std::string& reason) const {
  return caf::make_error(caf::sec::runtime_error,
                         std::string{component_} +
                             ": worker crashed in a task: " + reason);
}

std::size_t pool_core::missing_locked(std::size_t active, bool replacing) {
  active += starting_;
  if (closed_ || active >= target_)
    return 0;
  auto n = target_ - active;
  starting_ += n;
  if (replacing)
    replaced_ += n;
  return n;
}

void pool_core::started_locked() {
  if (starting_ > 0)
    --starting_;
}

std::vector<item_ptr> pool_core::stranded_locked() {
  std::vector<item_ptr> out;
  bool no_one_left = closed_ && workers_locked() == 0;
  bool too_late = cancel_at_ && std::chrono::steady_clock::now() >= *cancel_at_;
  if (!queue_.empty() && (no_one_left || too_late)) {
    out.assign(std::make_move_iterator(queue_.begin()),
               std::make_move_iterator(queue_.end()));
    queue_.clear();
  }
  return out;
}

void pool_core::track(const caf::actor& w) {
  if (rt_)
    rt_->track(w);
}

} // namespace detail

// -- basic_pool ---------------------------------------------------------------

basic_pool::~basic_pool() {
  if (core_)
    core_->shutdown_default();
}

caf::error basic_pool::resize(std::size_t workers) {
  return core_->resize(workers);
}

bool basic_pool::wait_for_workers(std::size_t n, caf::timespan timeout) {
  return core_->wait_for_workers(n, timeout);
}

caf::error basic_pool::shutdown(shutdown_options opts) {
  return core_->shutdown(opts);
}

pool_stats basic_pool::stats() const {
  return core_->stats();
}

bool basic_pool::kill_one_worker() {
  return core_->kill_one_worker();
}

} // namespace actorbus::actors
