// The controller of a run and the run's start: `start` checks the plan,
// spawns the actors from the sink upstream (each knows its downstream and
// the credit it grants) and the controller, which monitors them all, stops
// them all on an abort, a cancel or the deadline, and completes the run's
// state once every one has exited. `pipeline_handle` reads that state.

#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "run_state.hpp"

#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>
#include <caf/system_messages.hpp>

#include <algorithm>

namespace actorbus::pipeline {

namespace {

using namespace internal;

// -- controller -------------------------------------------------------------

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
        error_ = make_error(errc::actor_failed, runtime::describe(dm.reason));
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
            delayed_send(this, st_->opts.deadline, deadline_v);
        },
        [this](abort_atom, caf::error& err) { fail(std::move(err)); },
        [this](cancel_atom) {
          fail(make_error(errc::cancelled, "cancelled by the user"));
        },
        [this](deadline_atom) {
          fail(make_error(errc::deadline_exceeded,
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
                           "run_options.batch: must be at least 1");
  if ((!spec.source.pull && !spec.source.push) || !spec.sink.consume)
    return caf::make_error(caf::sec::invalid_argument,
                           "pipeline_plan: no source or no sink");
  if (spec.source.error)
    return spec.source.error;
  for (auto& s : spec.stages) {
    if (s.opts.parallelism == 0)
      return caf::make_error(caf::sec::invalid_argument,
                             "stage_options.parallelism: must be at least 1 "
                             "(stage '" +
                                 s.name + "')");
    if (s.opts.on_error.backoff)
      if (auto err = s.opts.on_error.backoff->validate())
        return err;
  }
  auto st = std::make_shared<detail::run_state>();
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
  auto down = spawn_sink(sys, st, std::move(spec.sink));
  all.push_back(down);
  auto credit = sink_credit;
  for (auto i = spec.stages.size(); i-- > 0;) {
    auto& s = spec.stages[i];
    auto cap = s.opts.buffer == 0 ? 4 * b * s.opts.parallelism
                                  : round_up(s.opts.buffer, b);
    auto stage = spawn_stage(sys, st, s, i + 1, down, credit);
    all.insert(all.end(), stage.workers.begin(), stage.workers.end());
    down = std::move(stage.coordinator);
    all.push_back(down);
    credit = cap;
  }
  if (spec.source.push) {
    // Subscribe before returning, so that nothing published after `run`
    // misses the pipeline.
    auto attach = spec.source.push->attach;
    auto source =
        spawn_push_source(sys, st, std::move(spec.source), down, credit);
    auto feed = attach(source);
    if (!feed) {
      for (auto& a : all)
        caf::anon_send_exit(a, caf::exit_reason::kill);
      caf::anon_send_exit(source, caf::exit_reason::kill);
      caf::anon_send_exit(controller, caf::exit_reason::kill);
      return make_error(errc::source_failed, runtime::describe(feed.error()));
    }
    {
      std::lock_guard<std::mutex> guard{st->mtx};
      st->source_feed = std::move(*feed);
    }
    all.push_back(std::move(source));
  } else
    all.push_back(spawn_source(sys, st, std::move(spec.source), down, credit));
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
  caf::anon_send(controller, start_v);
  return pipeline_handle{st};
}

} // namespace

// -- pipeline_handle --------------------------------------------------------

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
    caf::anon_send(c, cancel_v);
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

// -- pipeline_plan ----------------------------------------------------------

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

} // namespace actorbus::pipeline
