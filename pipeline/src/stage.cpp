// A stage of a run: a coordinator that takes batches from upstream within
// its buffer, hands them to its workers, puts results back in input order
// (when ordered) and sends them on as downstream's credit allows; each
// worker applies the stage function and the stage's error policy.

#include "run_state.hpp"

#include <caf/actor_cast.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <deque>
#include <map>
#include <optional>

namespace actorbus::pipeline::internal {

namespace {

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
            delayed_send(this, *pause, resume_v);
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
        send(st_->controller, abort_v, std::move(err));
        return; // the controller stops every actor
      }
      if (action == error_action::dead_letter) {
        stats_.dead_letters.fetch_add(1, std::memory_order_relaxed);
        st_->add_dead_letter(
            failed_item{spec_.name, err, spec_.item_at(in_.items, failed)});
      }
      pos_ = failed + 1;
      attempt_ = 1;
    }
    out_.size = spec_.size(out_.items);
    auto n_in = in_.size;
    in_ = batch{};
    send(coordinator_, done_v, seq_, std::move(out_), n_in);
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

// -- stage coordinator ------------------------------------------------------

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
      send(workers_[w], work_v, seq, std::move(b));
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
        send(down_, batch_v, std::move(out));
      }
      released += n_in;
      ready_.pop_front();
    }
    if (released > 0) {
      held_ -= released;
      send(up_, demand_v, released);
    }
  }

  void maybe_finish() {
    if (!upstream_ended_ || !pending_.empty() || !busy_.empty() ||
        !ready_.empty() || !reorder_.empty())
      return;
    send(down_, end_v);
    for (auto& w : workers_)
      send(w, end_v);
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

} // namespace

stage_actors spawn_stage(caf::actor_system& sys, state_ptr st,
                         const detail::stage_spec& spec, std::size_t index,
                         caf::actor downstream, std::size_t credit) {
  stage_actors result;
  for (std::size_t w = 0; w < spec.opts.parallelism; ++w)
    result.workers.push_back(sys.spawn<worker_actor>(st, spec, index));
  result.coordinator =
      sys.spawn<stage_actor>(std::move(st), index, result.workers,
                             spec.opts.ordered, std::move(downstream), credit);
  return result;
}

} // namespace actorbus::pipeline::internal
