// Actors of a pipeline run: source, stage coordinators and their workers,
// sink, and a controller that watches them all and completes the run.

#include "actorbus/pipeline/pipeline.hpp"

#include "actorbus/runtime/runtime.hpp"

#include <caf/actor_cast.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/message.hpp>
#include <caf/response_promise.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>
#include <caf/system_messages.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>

namespace actorbus::pipeline::detail {

/// A batch of items travelling between pipeline actors.
struct batch {
  std::any items;
  std::size_t size = 0;
};

} // namespace actorbus::pipeline::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(actorbus::pipeline::detail::batch)

namespace actorbus::pipeline {

namespace {

using batch_atom = caf::atom_constant<caf::atom("pl_batch")>;
using end_atom = caf::atom_constant<caf::atom("pl_end")>;
using demand_atom = caf::atom_constant<caf::atom("pl_demand")>;
using work_atom = caf::atom_constant<caf::atom("pl_work")>;
using done_atom = caf::atom_constant<caf::atom("pl_done")>;
using resume_atom = caf::atom_constant<caf::atom("pl_resume")>;
using abort_atom = caf::atom_constant<caf::atom("pl_abort")>;
using cancel_atom = caf::atom_constant<caf::atom("pl_cancel")>;
using deadline_atom = caf::atom_constant<caf::atom("pl_dline")>;
using start_atom = caf::atom_constant<caf::atom("pl_start")>;
using flush_atom = caf::atom_constant<caf::atom("pl_flush")>;
using idle_atom = caf::atom_constant<caf::atom("pl_idle")>;

constexpr auto category = caf::atom("pipeline");

using clock_type = std::chrono::steady_clock;

} // namespace

namespace detail {

struct counters {
  std::string name;
  std::atomic<uint64_t> in{0};
  std::atomic<uint64_t> out{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> dead_letters{0};
  std::atomic<int64_t> busy_ns{0};
  std::atomic<std::size_t> peak{0};

  void add_busy(clock_type::time_point since) {
    busy_ns.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(
                          clock_type::now() - since)
                          .count(),
                      std::memory_order_relaxed);
  }

  void raise_peak(std::size_t x) {
    auto cur = peak.load(std::memory_order_relaxed);
    while (x > cur && !peak.compare_exchange_weak(cur, x))
      ; // retry
  }

  stage_stats snapshot() const {
    stage_stats s;
    s.name = name;
    s.in = in.load();
    s.out = out.load();
    s.errors = errors.load();
    s.retries = retries.load();
    s.dead_letters = dead_letters.load();
    s.busy = caf::timespan{busy_ns.load()};
    s.peak_queue_depth = peak.load();
    return s;
  }
};

struct run_state {
  run_options opts;
  std::deque<counters> stats; // source, stages, sink
  clock_type::time_point started = clock_type::now();

  mutable std::mutex mtx;
  std::condition_variable cv;
  bool done = false;
  caf::error error;
  std::vector<dead_letter> dead;
  std::vector<caf::actor> actors;
  caf::actor controller;
  caf::timespan elapsed{0};
  /// What feeds a push source (its subscription); the source releases it
  /// when it exits.
  std::shared_ptr<void> source_feed;

  void report_error(const std::string& stage, const caf::error& err,
                    std::size_t attempts, error_action action) {
    if (opts.on_error)
      opts.on_error(item_error{stage, err, attempts, action});
  }

  void add_dead_letter(dead_letter x) {
    if (opts.on_dead_letter) {
      opts.on_dead_letter(std::move(x));
      return;
    }
    std::lock_guard<std::mutex> guard{mtx};
    if (dead.size() < opts.max_kept_dead_letters)
      dead.push_back(std::move(x));
  }
};

caf::error error_from_exception(std::exception_ptr ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    return make_error(pipeline_errc::item_failed, e.what());
  } catch (...) {
    return make_error(pipeline_errc::item_failed, "unknown exception");
  }
}

} // namespace detail

caf::error make_error(pipeline_errc code, std::string what) {
  return caf::error{static_cast<uint8_t>(code), category,
                    caf::make_message(std::move(what))};
}

bool is(const caf::error& err, pipeline_errc code) {
  return err.category() == category && err.code() == static_cast<uint8_t>(code);
}

std::string describe(const caf::error& err) {
  if (!err)
    return "none";
  if (err.category() != category)
    return caf::to_string(err);
  static constexpr const char* names[] = {
      "none",          "cancelled",   "deadline_exceeded", "item_failed",
      "source_failed", "sink_failed", "actor_failed"};
  std::string out = "pipeline.";
  out += err.code() < std::size(names) ? names[err.code()] : "unknown";
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0)) {
    out += ": ";
    out += ctx.get_as<std::string>(0);
  }
  return out;
}

namespace {

using detail::batch;
using detail::counters;
using detail::run_state;
using state_ptr = std::shared_ptr<run_state>;

// -- source -----------------------------------------------------------------

class source_actor : public caf::event_based_actor {
public:
  source_actor(caf::actor_config& cfg, state_ptr st, detail::source_spec spec,
               caf::actor downstream, std::size_t credit)
      : caf::event_based_actor(cfg)
      , st_(std::move(st))
      , spec_(std::move(spec))
      , down_(std::move(downstream))
      , credit_(credit)
      , stats_(st_->stats.front()) {
    // nop
  }

  caf::behavior make_behavior() override {
    produce();
    return {
        [this](demand_atom, std::size_t n) {
          credit_ += n;
          produce();
        },
    };
  }

private:
  void produce() {
    auto max_batch = st_->opts.batch;
    while (!ended_ && credit_ > 0) {
      auto want = std::min(credit_, max_batch);
      batch b{spec_.make_batch(want), 0};
      auto t0 = clock_type::now();
      try {
        b.size = spec_.pull(b.items, want);
      } catch (...) {
        stats_.add_busy(t0);
        auto err = detail::error_from_exception(std::current_exception());
        ended_ = true;
        send(st_->controller, abort_atom::value,
             make_error(pipeline_errc::source_failed, describe(err)));
        return;
      }
      stats_.add_busy(t0);
      if (b.size == 0) {
        ended_ = true;
        send(down_, end_atom::value);
        quit();
        return;
      }
      credit_ -= b.size;
      stats_.out.fetch_add(b.size, std::memory_order_relaxed);
      send(down_, batch_atom::value, std::move(b));
    }
  }

  void on_exit() override {
    // Neighbours hold each other: drop the handles to break the cycle.
    down_ = nullptr;
  }

  state_ptr st_;
  detail::source_spec spec_;
  caf::actor down_;
  std::size_t credit_;
  counters& stats_;
  bool ended_ = false;
};

// -- push source --------------------------------------------------------------

/// A source fed by requests (a bus subscription): each request is answered
/// once its item went downstream, so the sender never has more than its own
/// window of unanswered events here.
class push_source_actor : public caf::event_based_actor {
public:
  push_source_actor(caf::actor_config& cfg, state_ptr st,
                    detail::source_spec spec, caf::actor downstream,
                    std::size_t credit)
      : caf::event_based_actor(cfg)
      , st_(std::move(st))
      , spec_(std::move(spec))
      , push_(std::move(*spec_.push))
      , down_(std::move(downstream))
      , credit_(credit)
      , stats_(st_->stats.front()) {
    // nop
  }

  caf::behavior make_behavior() override {
    cur_ = spec_.make_batch(0);
    set_default_handler([this](caf::scheduled_actor*, caf::message_view& x) {
      return on_event(x);
    });
    arm_idle_timer();
    return {
        [this](demand_atom, std::size_t n) {
          credit_ += n;
          flush();
        },
        [this](flush_atom) {
          flush_scheduled_ = false;
          flush();
        },
        [this](idle_atom, uint64_t seen) {
          if (ending_)
            return;
          if (seen == events_) {
            ending_ = true;
            flush();
          } else {
            arm_idle_timer();
          }
        },
    };
  }

private:
  caf::result<caf::message> on_event(caf::message_view& view) {
    ++events_;
    if (ending_)
      return make_error(pipeline_errc::source_failed,
                        "the pipeline's source '" + spec_.name +
                            "' has ended its stream");
    auto msg = view.move_content_to_message();
    switch (push_.take(msg, cur_)) {
    case detail::push_result::rejected:
      return make_error(pipeline_errc::source_failed,
                        "the pipeline's source '" + spec_.name +
                            "' expects another event type");
    case detail::push_result::end:
      ending_ = true;
      flush();
      return caf::message{};
    case detail::push_result::item:
      break;
    }
    auto rp = make_response_promise();
    pending_.push_back(rp);
    stats_.raise_peak(pending_.size());
    if (push_.max_items != 0 && ++items_ == push_.max_items)
      ending_ = true;
    if (ending_ || pending_.size() >= st_->opts.batch) {
      flush();
    } else if (!flush_scheduled_) {
      // Coalesce: the flush runs after the events already in the mailbox.
      flush_scheduled_ = true;
      send(this, flush_atom::value);
    }
    return rp;
  }

  void flush() {
    while (credit_ > 0 && !pending_.empty()) {
      auto n = std::min({credit_, pending_.size(), st_->opts.batch});
      batch b{n == pending_.size() ? std::exchange(cur_, spec_.make_batch(0))
                                   : push_.take_front(cur_, n),
              n};
      credit_ -= n;
      stats_.out.fetch_add(n, std::memory_order_relaxed);
      send(down_, batch_atom::value, std::move(b));
      for (std::size_t i = 0; i < n; ++i) {
        pending_.front().deliver(caf::unit);
        pending_.pop_front();
      }
    }
    if (ending_ && pending_.empty() && !ended_) {
      ended_ = true;
      send(down_, end_atom::value);
      quit();
    }
  }

  void arm_idle_timer() {
    if (push_.idle_timeout.count() > 0)
      delayed_send(this, push_.idle_timeout, idle_atom::value, events_);
  }

  void on_exit() override {
    // Events held but not passed on: the sender gets an error for each (the
    // bus dead-letters them), then the subscription ends.
    for (auto& rp : pending_)
      rp.deliver(make_error(pipeline_errc::source_failed,
                            "the pipeline stopped before this event went "
                            "downstream"));
    pending_.clear();
    std::shared_ptr<void> feed;
    {
      std::lock_guard<std::mutex> guard{st_->mtx};
      feed.swap(st_->source_feed);
    }
    feed.reset(); // unsubscribes, outside the lock
    down_ = nullptr;
  }

  state_ptr st_;
  detail::source_spec spec_;
  detail::push_spec push_;
  caf::actor down_;
  std::size_t credit_;
  counters& stats_;
  std::any cur_;
  std::deque<caf::response_promise> pending_;
  uint64_t events_ = 0;
  std::size_t items_ = 0;
  bool flush_scheduled_ = false;
  bool ending_ = false;
  bool ended_ = false;
};

// -- worker -----------------------------------------------------------------

class worker_actor : public caf::event_based_actor {
public:
  worker_actor(caf::actor_config& cfg, state_ptr st, detail::stage_spec spec,
               std::size_t index)
      : caf::event_based_actor(cfg)
      , st_(std::move(st))
      , spec_(std::move(spec))
      , stats_(st_->stats[index]) {
    // nop
  }

  caf::behavior make_behavior() override {
    return {
        [this](work_atom, uint64_t seq, batch& b) {
          coordinator_ = caf::actor_cast<caf::actor>(current_sender());
          seq_ = seq;
          in_ = std::move(b);
          out_ = batch{spec_.make_batch(in_.size), 0};
          pos_ = 0;
          attempt_ = 1;
          work();
        },
        [this](resume_atom) {
          stats_.retries.fetch_add(1, std::memory_order_relaxed);
          work();
        },
        [this](end_atom) { quit(); },
    };
  }

private:
  void work() {
    const auto& policy = spec_.opts.on_error;
    for (;;) {
      caf::error err;
      auto t0 = clock_type::now();
      auto failed = spec_.process(in_.items, pos_, out_.items, err);
      stats_.add_busy(t0);
      if (failed >= in_.size)
        break;
      // Item `failed` did not succeed on try `attempt_`.
      auto action = policy.action;
      if (action == error_action::retry) {
        std::optional<caf::timespan> pause;
        if (attempt_ == 1)
          first_try_ = clock().now();
        if (policy.backoff)
          pause =
              policy.backoff->next(attempt_, err,
                                   std::chrono::duration_cast<caf::timespan>(
                                       clock().now() - first_try_));
        else if (attempt_ < policy.attempts)
          pause = policy.delay;
        if (pause) {
          ++attempt_;
          pos_ = failed;
          if (pause->count() > 0) {
            delayed_send(this, *pause, resume_atom::value);
            return;
          }
          stats_.retries.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        action = policy.then == error_action::retry ? error_action::skip
                                                    : policy.then;
      }
      stats_.errors.fetch_add(1, std::memory_order_relaxed);
      st_->report_error(spec_.name, err, attempt_, action);
      if (action == error_action::abort) {
        send(st_->controller, abort_atom::value, std::move(err));
        return; // the controller stops every actor
      }
      if (action == error_action::dead_letter) {
        stats_.dead_letters.fetch_add(1, std::memory_order_relaxed);
        st_->add_dead_letter(
            dead_letter{spec_.name, err, spec_.item_at(in_.items, failed)});
      }
      pos_ = failed + 1;
      attempt_ = 1;
    }
    out_.size = spec_.size(out_.items);
    auto n_in = in_.size;
    in_ = batch{};
    send(coordinator_, done_atom::value, seq_, std::move(out_), n_in);
  }

  void on_exit() override {
    coordinator_ = nullptr;
  }

  state_ptr st_;
  detail::stage_spec spec_;
  counters& stats_;
  caf::actor coordinator_;
  uint64_t seq_ = 0;
  batch in_;
  batch out_;
  std::size_t pos_ = 0;
  std::size_t attempt_ = 1;
  caf::actor_clock::time_point first_try_;
};

// -- stage coordinator --------------------------------------------------------

class stage_actor : public caf::event_based_actor {
public:
  stage_actor(caf::actor_config& cfg, state_ptr st, std::size_t index,
              std::vector<caf::actor> workers, bool ordered,
              caf::actor downstream, std::size_t credit)
      : caf::event_based_actor(cfg)
      , st_(std::move(st))
      , stats_(st_->stats[index])
      , workers_(std::move(workers))
      , ordered_(ordered)
      , down_(std::move(downstream))
      , credit_(credit) {
    for (std::size_t i = 0; i < workers_.size(); ++i)
      idle_.push_back(i);
  }

  caf::behavior make_behavior() override {
    return {
        [this](batch_atom, batch& b) {
          if (!up_)
            up_ = caf::actor_cast<caf::actor>(current_sender());
          held_ += b.size;
          stats_.in.fetch_add(b.size, std::memory_order_relaxed);
          stats_.raise_peak(held_);
          pending_.emplace_back(next_in_++, std::move(b));
          dispatch();
        },
        [this](done_atom, uint64_t seq, batch& out, std::size_t n_in) {
          auto w = busy_.at(seq);
          busy_.erase(seq);
          idle_.push_back(w);
          if (ordered_) {
            reorder_.emplace(seq, std::make_pair(std::move(out), n_in));
            for (auto i = reorder_.find(next_out_); i != reorder_.end();
                 i = reorder_.find(++next_out_)) {
              ready_.push_back(std::move(i->second));
              reorder_.erase(i);
            }
          } else {
            ready_.emplace_back(std::move(out), n_in);
          }
          flush();
          dispatch();
          maybe_finish();
        },
        [this](demand_atom, std::size_t n) {
          credit_ += n;
          flush();
          maybe_finish();
        },
        [this](end_atom) {
          upstream_ended_ = true;
          maybe_finish();
        },
    };
  }

private:
  void dispatch() {
    while (!idle_.empty() && !pending_.empty()) {
      auto w = idle_.front();
      idle_.pop_front();
      auto& [seq, b] = pending_.front();
      busy_.emplace(seq, w);
      send(workers_[w], work_atom::value, seq, std::move(b));
      pending_.pop_front();
    }
  }

  void flush() {
    std::size_t released = 0;
    while (!ready_.empty()) {
      auto& [out, n_in] = ready_.front();
      if (out.size > 0) {
        if (credit_ < out.size)
          break;
        credit_ -= out.size;
        stats_.out.fetch_add(out.size, std::memory_order_relaxed);
        send(down_, batch_atom::value, std::move(out));
      }
      released += n_in;
      ready_.pop_front();
    }
    if (released > 0) {
      held_ -= released;
      send(up_, demand_atom::value, released);
    }
  }

  void maybe_finish() {
    if (!upstream_ended_ || !pending_.empty() || !busy_.empty() ||
        !ready_.empty() || !reorder_.empty())
      return;
    send(down_, end_atom::value);
    for (auto& w : workers_)
      send(w, end_atom::value);
    quit();
  }

  void on_exit() override {
    workers_.clear();
    down_ = nullptr;
    up_ = nullptr;
    pending_.clear();
    reorder_.clear();
    ready_.clear();
  }

  state_ptr st_;
  counters& stats_;
  std::vector<caf::actor> workers_;
  bool ordered_;
  caf::actor down_;
  caf::actor up_;
  std::size_t credit_;
  std::size_t held_ = 0;
  bool upstream_ended_ = false;
  uint64_t next_in_ = 0;
  uint64_t next_out_ = 0;
  std::deque<std::size_t> idle_;
  std::map<uint64_t, std::size_t> busy_;
  std::deque<std::pair<uint64_t, batch>> pending_;
  std::map<uint64_t, std::pair<batch, std::size_t>> reorder_;
  std::deque<std::pair<batch, std::size_t>> ready_;
};

// -- sink -------------------------------------------------------------------

class sink_actor : public caf::event_based_actor {
public:
  sink_actor(caf::actor_config& cfg, state_ptr st, detail::sink_spec spec)
      : caf::event_based_actor(cfg)
      , st_(std::move(st))
      , spec_(std::move(spec))
      , stats_(st_->stats.back()) {
    // nop
  }

  caf::behavior make_behavior() override {
    return {
        [this](batch_atom, batch& b) {
          if (failed_)
            return;
          stats_.in.fetch_add(b.size, std::memory_order_relaxed);
          stats_.raise_peak(b.size);
          auto t0 = clock_type::now();
          try {
            spec_.consume(b.items);
          } catch (...) {
            stats_.add_busy(t0);
            failed_ = true;
            auto err = detail::error_from_exception(std::current_exception());
            send(st_->controller, abort_atom::value,
                 make_error(pipeline_errc::sink_failed, describe(err)));
            return;
          }
          stats_.add_busy(t0);
          send(caf::actor_cast<caf::actor>(current_sender()),
               demand_atom::value, b.size);
        },
        [this](end_atom) { quit(); },
    };
  }

private:
  state_ptr st_;
  detail::sink_spec spec_;
  counters& stats_;
  bool failed_ = false;
};

// -- controller ---------------------------------------------------------------

class controller_actor : public caf::event_based_actor {
public:
  controller_actor(caf::actor_config& cfg, state_ptr st)
      : caf::event_based_actor(cfg)
      , st_(std::move(st)) {
    // nop
  }

  caf::behavior make_behavior() override {
    set_down_handler([this](caf::down_msg& dm) {
      // Stops we ordered set error_ first; any other abnormal exit is one.
      if (dm.reason && !error_)
        error_ =
            make_error(pipeline_errc::actor_failed, caf::to_string(dm.reason));
      if (--running_ == 0)
        finish();
    });
    return {
        [this](start_atom) {
          std::vector<caf::actor> all;
          {
            std::lock_guard<std::mutex> guard{st_->mtx};
            all = st_->actors;
          }
          watched_ = std::move(all);
          running_ = watched_.size();
          for (auto& a : watched_)
            monitor(a);
          if (error_)
            stop_all();
          else if (st_->opts.deadline.count() > 0)
            delayed_send(this, st_->opts.deadline, deadline_atom::value);
        },
        [this](abort_atom, caf::error& err) { fail(std::move(err)); },
        [this](cancel_atom) {
          fail(make_error(pipeline_errc::cancelled, "cancelled by the user"));
        },
        [this](deadline_atom) {
          fail(make_error(pipeline_errc::deadline_exceeded,
                          "deadline passed before the end of the stream"));
        },
    };
  }

private:
  void fail(caf::error err) {
    if (error_ || finished_)
      return;
    error_ = std::move(err);
    stop_all();
  }

  void stop_all() {
    for (auto& a : watched_)
      send_exit(a, caf::exit_reason::user_shutdown);
  }

  void finish() {
    finished_ = true;
    watched_.clear();
    {
      std::lock_guard<std::mutex> guard{st_->mtx};
      st_->done = true;
      st_->error = error_;
      st_->actors.clear();
      st_->controller = nullptr;
      st_->elapsed = std::chrono::duration_cast<caf::timespan>(
          clock_type::now() - st_->started);
    }
    st_->cv.notify_all();
    quit();
  }

  void on_exit() override {
    watched_.clear();
  }

  state_ptr st_;
  std::vector<caf::actor> watched_;
  std::size_t running_ = 0;
  caf::error error_;
  bool finished_ = false;
};

std::size_t round_up(std::size_t x, std::size_t batch) {
  return std::max(x, batch);
}

caf::expected<pipeline_handle>
start(caf::actor_system& sys, detail::plan_spec spec, run_options opts,
      std::function<void(const caf::actor&)> track) {
  if (opts.batch == 0)
    return caf::make_error(caf::sec::invalid_argument,
                           "pipeline: batch must be at least 1");
  if ((!spec.source.pull && !spec.source.push) || !spec.sink.consume)
    return caf::make_error(caf::sec::invalid_argument,
                           "pipeline: missing source or sink");
  if (spec.source.error)
    return spec.source.error;
  for (auto& s : spec.stages) {
    if (s.opts.parallelism == 0)
      return caf::make_error(caf::sec::invalid_argument,
                             "pipeline: stage '" + s.name +
                                 "' has parallelism 0");
    if (s.opts.on_error.backoff)
      if (auto err = s.opts.on_error.backoff->validate())
        return err;
  }
  auto st = std::make_shared<run_state>();
  st->opts = std::move(opts);
  const auto b = st->opts.batch;
  st->stats.emplace_back().name = spec.source.name;
  for (auto& s : spec.stages)
    st->stats.emplace_back().name = s.name;
  st->stats.emplace_back().name = spec.sink.name;
  auto controller = sys.spawn<controller_actor>(st);
  st->controller = controller;
  std::vector<caf::actor> all;
  // Spawn downstream first: each actor knows its downstream and the credit
  // that one grants up front.
  auto sink_credit =
      st->opts.sink_credit == 0 ? 4 * b : round_up(st->opts.sink_credit, b);
  auto down = sys.spawn<sink_actor>(st, std::move(spec.sink));
  all.push_back(down);
  auto credit = sink_credit;
  for (auto i = spec.stages.size(); i-- > 0;) {
    auto& s = spec.stages[i];
    auto cap = s.opts.buffer == 0 ? 4 * b * s.opts.parallelism
                                  : round_up(s.opts.buffer, b);
    std::vector<caf::actor> workers;
    for (std::size_t w = 0; w < s.opts.parallelism; ++w) {
      workers.push_back(sys.spawn<worker_actor>(st, s, i + 1));
      all.push_back(workers.back());
    }
    down = sys.spawn<stage_actor>(st, i + 1, std::move(workers), s.opts.ordered,
                                  down, credit);
    all.push_back(down);
    credit = cap;
  }
  if (spec.source.push) {
    // Subscribe before returning, so that nothing published after `run`
    // misses the pipeline.
    auto attach = spec.source.push->attach;
    auto source =
        sys.spawn<push_source_actor>(st, std::move(spec.source), down, credit);
    auto feed = attach(source);
    if (!feed) {
      for (auto& a : all)
        caf::anon_send_exit(a, caf::exit_reason::kill);
      caf::anon_send_exit(source, caf::exit_reason::kill);
      caf::anon_send_exit(controller, caf::exit_reason::kill);
      return make_error(pipeline_errc::source_failed, describe(feed.error()));
    }
    {
      std::lock_guard<std::mutex> guard{st->mtx};
      st->source_feed = std::move(*feed);
    }
    all.push_back(std::move(source));
  } else
    all.push_back(
        sys.spawn<source_actor>(st, std::move(spec.source), down, credit));
  std::reverse(all.begin(), all.end());
  if (track) {
    for (auto& a : all)
      track(a);
    track(controller);
  }
  {
    std::lock_guard<std::mutex> guard{st->mtx};
    st->actors = all; // the controller watches these
  }
  caf::anon_send(controller, start_atom::value);
  return pipeline_handle{st};
}

} // namespace

// -- pipeline_handle
// -----------------------------------------------------------

pipeline_handle::pipeline_handle(std::shared_ptr<detail::run_state> state)
    : state_(std::move(state)) {
  // nop
}

bool pipeline_handle::done() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  return state_->done;
}

caf::expected<pipeline_report>
pipeline_handle::wait(caf::timespan timeout) const {
  std::unique_lock<std::mutex> guard{state_->mtx};
  if (!state_->cv.wait_for(guard, timeout, [&] { return state_->done; }))
    return caf::make_error(caf::sec::request_timeout, "pipeline still running");
  pipeline_report r;
  r.error = state_->error;
  r.dead_letters = state_->dead;
  r.elapsed = state_->elapsed;
  guard.unlock();
  r.stages = stats();
  return r;
}

void pipeline_handle::cancel() const {
  caf::actor c;
  {
    std::lock_guard<std::mutex> guard{state_->mtx};
    c = state_->controller;
  }
  if (c)
    caf::anon_send(c, cancel_atom::value);
}

std::vector<stage_stats> pipeline_handle::stats() const {
  std::vector<stage_stats> out;
  for (auto& c : state_->stats)
    out.push_back(c.snapshot());
  return out;
}

std::vector<caf::actor> pipeline_handle::actors() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  auto out = state_->actors;
  if (state_->controller)
    out.push_back(state_->controller);
  return out;
}

// -- pipeline_plan
// --------------------------------------------------------------

caf::expected<pipeline_handle> pipeline_plan::run(caf::actor_system& sys,
                                                  run_options opts) && {
  return start(sys, std::move(spec_), std::move(opts), nullptr);
}

caf::expected<pipeline_handle> pipeline_plan::run(runtime::runtime& rt,
                                                  run_options opts) && {
  if (!rt.accepting())
    return caf::make_error(caf::sec::runtime_error, "runtime is shutting down");
  return start(rt.system(), std::move(spec_), std::move(opts),
               [&rt](const caf::actor& a) { rt.track(a); });
}

// -- sources ------------------------------------------------------------------

flow<int64_t> from_iota(int64_t first, int64_t last) {
  detail::plan_spec spec;
  spec.source.pull = [next = first, last](std::any& b,
                                          std::size_t max) mutable {
    auto& xs = detail::items<int64_t>(b);
    std::size_t n = 0;
    for (; n < max && next < last; ++n)
      xs.push_back(next++);
    return n;
  };
  spec.source.make_batch = &detail::make_batch<int64_t>;
  return flow<int64_t>{std::move(spec)};
}

flow<std::string> from_lines(const std::string& path) {
  detail::plan_spec spec;
  auto in = std::make_shared<std::ifstream>(path);
  if (!*in)
    spec.source.error =
        make_error(pipeline_errc::source_failed, "cannot open '" + path + "'");
  spec.source.name = "lines";
  spec.source.pull = [in](std::any& b, std::size_t max) {
    auto& xs = detail::items<std::string>(b);
    std::size_t n = 0;
    std::string line;
    while (n < max && std::getline(*in, line)) {
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      xs.push_back(std::move(line));
      ++n;
    }
    if (in->bad())
      throw std::runtime_error("read error");
    return n;
  };
  spec.source.make_batch = &detail::make_batch<std::string>;
  return flow<std::string>{std::move(spec)};
}

} // namespace actorbus::pipeline
