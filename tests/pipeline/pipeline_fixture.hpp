#pragma once

// The fixture shared by the pipeline tests.

#include "actorbus/pipeline/pipeline.hpp"
#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "deterministic_fixture.hpp"

#include <caf/actor_cast.hpp>
#include <caf/resumable.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <utility>

namespace actorbus::test {

inline constexpr auto long_wait = caf::timespan{std::chrono::seconds{30}};

/// Runs pipelines on CAF's deterministic scheduler (`start`) or on a
/// runtime with real threads (`start_threaded`); the run is `sut`.
class pipeline_fixture : public actorbus::test::deterministic_fixture {
protected:
  /// Starts `plan` on the deterministic system.
  void start(actorbus::pipeline::pipeline_plan plan,
             actorbus::pipeline::run_options opts = {}) {
    auto h = std::move(plan).run(sys, std::move(opts));
    ASSERT_TRUE(h) << actorbus::runtime::describe(h.error());
    sut.emplace(*h);
  }

  /// Starts `plan` on a runtime with real threads.
  void start_threaded(actorbus::pipeline::pipeline_plan plan,
                      actorbus::pipeline::run_options opts = {}) {
    auto h = std::move(plan).run(rt, std::move(opts));
    ASSERT_TRUE(h) << actorbus::runtime::describe(h.error());
    sut.emplace(*h);
  }

  /// The report of a run that the deterministic scheduler finished.
  actorbus::pipeline::pipeline_report finished() {
    run();
    auto r = sut->wait(caf::timespan{0});
    if (!r) {
      ADD_FAILURE() << "the pipeline has not finished";
      return {};
    }
    return std::move(*r);
  }

  /// Runs every job except those of `stalled`.
  void run_all_but(const caf::actor& stalled) {
    auto* r = dynamic_cast<caf::resumable*>(
        caf::actor_cast<caf::abstract_actor*>(stalled));
    sched.run_jobs_filtered([r](caf::resumable* x) { return x != r; });
  }

  actorbus::runtime::runtime rt;
  std::optional<actorbus::pipeline::pipeline_handle> sut;
};

} // namespace actorbus::test
