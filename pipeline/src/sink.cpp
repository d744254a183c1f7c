// The sink of a run: hands each batch to the user's function and grants
// its upstream the same number of items again.

#include "run_state.hpp"

#include <caf/actor_cast.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

namespace actorbus::pipeline::internal {

namespace {

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
            send(st_->controller, abort_v,
                 make_error(errc::sink_failed,
                            exception_text(std::current_exception())));
            return;
          }
          stats_.add_busy(t0);
          send(caf::actor_cast<caf::actor>(current_sender()), demand_v, b.size);
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

} // namespace

caf::actor spawn_sink(caf::actor_system& sys, state_ptr st,
                      detail::sink_spec spec) {
  return sys.spawn<sink_actor>(std::move(st), std::move(spec));
}

} // namespace actorbus::pipeline::internal
