// The source of a run: pulls items from the user's function (or takes them
// from the messages a bus subscription sends) as far as its downstream's
// credit allows, in batches, then ends the stream.

#include "run_state.hpp"

#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/message.hpp>
#include <caf/response_promise.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <fstream>
#include <stdexcept>

namespace actorbus::pipeline {

namespace internal {

namespace {

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
        ended_ = true;
        send(st_->controller, abort_v,
             make_error(errc::source_failed,
                        exception_text(std::current_exception())));
        return;
      }
      stats_.add_busy(t0);
      if (b.size == 0) {
        ended_ = true;
        send(down_, end_v);
        quit();
        return;
      }
      credit_ -= b.size;
      stats_.out.fetch_add(b.size, std::memory_order_relaxed);
      send(down_, batch_v, std::move(b));
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

// -- push source ------------------------------------------------------------

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
      return make_error(errc::source_failed, "the pipeline's source '" +
                                                 spec_.name +
                                                 "' has ended its stream");
    auto msg = view.move_content_to_message();
    switch (push_.take(msg, cur_)) {
    case detail::push_result::rejected:
      return make_error(errc::source_failed,
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
      send(this, flush_v);
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
      send(down_, batch_v, std::move(b));
      for (std::size_t i = 0; i < n; ++i) {
        pending_.front().deliver(caf::unit);
        pending_.pop_front();
      }
    }
    if (ending_ && pending_.empty() && !ended_) {
      ended_ = true;
      send(down_, end_v);
      quit();
    }
  }

  void arm_idle_timer() {
    if (push_.idle_timeout.count() > 0)
      delayed_send(this, push_.idle_timeout, idle_v, events_);
  }

  void on_exit() override {
    // Events held but not passed on: the sender gets an error for each (the
    // bus dead-letters them), then the subscription ends.
    for (auto& rp : pending_)
      rp.deliver(make_error(errc::source_failed,
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

} // namespace

caf::actor spawn_source(caf::actor_system& sys, state_ptr st,
                        detail::source_spec spec, caf::actor downstream,
                        std::size_t credit) {
  return sys.spawn<source_actor>(std::move(st), std::move(spec),
                                 std::move(downstream), credit);
}

caf::actor spawn_push_source(caf::actor_system& sys, state_ptr st,
                             detail::source_spec spec, caf::actor downstream,
                             std::size_t credit) {
  return sys.spawn<push_source_actor>(std::move(st), std::move(spec),
                                      std::move(downstream), credit);
}

} // namespace internal

// -- sources ----------------------------------------------------------------

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
        make_error(errc::source_failed, "cannot open '" + path + "'");
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
