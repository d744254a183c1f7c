#pragma once

// A GoogleTest fixture on CAF's deterministic scheduler, with virtual time.
//
// Nothing runs until the test says so: `run()` processes every pending
// message, `advance_time(d)` moves the virtual clock and fires the timeouts
// due, `run_after(d)` does both. Uses test_coordinator directly, not the
// libcaf_test DSL (in 0.17.6 its `run_once` miscounts and `allow(...).to` on
// an empty mailbox reads an uninitialised pointer).

#include "actorbus/runtime/config.hpp"

#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <gtest/gtest.h>

namespace actorbus::test {

/// A runtime_config that selects the deterministic scheduler.
inline runtime::runtime_config deterministic_config() {
  runtime::runtime_config cfg;
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.verbosity", caf::atom("quiet"));
  cfg.set("logger.inline-output", true);
  return cfg;
}

class deterministic_fixture : public ::testing::Test {
protected:
  deterministic_fixture()
      : cfg(deterministic_config())
      , sys(cfg)
      , sched(
            dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {
    // nop
  }

  ~deterministic_fixture() override {
    run();
  }

  /// Processes messages until no actor has anything left to do.
  /// Returns how many jobs ran.
  size_t run() {
    return sched.run();
  }

  /// Moves virtual time forward, fires due timeouts and processes the
  /// resulting messages. Returns how many timeouts fired.
  size_t run_after(caf::timespan d) {
    auto fired = sched.advance_time(d);
    run();
    return fired;
  }

  /// Current virtual time.
  caf::actor_clock::time_point now() const {
    return sched.clock().now();
  }

  runtime::runtime_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
};

} // namespace actorbus::test
