#pragma once

// What the actors of one pipeline run share: the messages they exchange,
// the run's state (statistics, dead letters, completion) and the functions
// that spawn each kind of actor (source.cpp, stage.cpp, sink.cpp; the
// controller in controller.cpp starts the run and completes it).
//
// Flow between neighbours: downstream grants credit (`demand`), upstream
// sends at most that many items in `batch` messages, then one `end`. The
// controller monitors every actor; an `abort` (a failed item, source or
// sink), `cancel` or the deadline makes it stop them all.

#include "actorbus/pipeline/pipeline.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <any>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace actorbus::pipeline::internal {

/// A batch of items travelling between pipeline actors.
struct batch {
  std::any items;
  std::size_t size = 0;
};

} // namespace actorbus::pipeline::internal

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(actorbus::pipeline::internal::batch)

namespace actorbus::pipeline::internal {

/// Items downstream: `(batch_atom, batch)`.
using batch_atom = caf::atom_constant<caf::atom("pl_batch")>;
inline constexpr batch_atom batch_v{};
/// End of stream, after the last batch: `(end_atom)`.
using end_atom = caf::atom_constant<caf::atom("pl_end")>;
inline constexpr end_atom end_v{};
/// Credit upstream: `(demand_atom, std::size_t n)`.
using demand_atom = caf::atom_constant<caf::atom("pl_demand")>;
inline constexpr demand_atom demand_v{};
/// A stage hands a batch to a worker: `(work_atom, seq, batch)`.
using work_atom = caf::atom_constant<caf::atom("pl_work")>;
inline constexpr work_atom work_v{};
/// A worker's result: `(done_atom, seq, batch out, std::size_t n_in)`.
using done_atom = caf::atom_constant<caf::atom("pl_done")>;
inline constexpr done_atom done_v{};
/// A worker's retry timer fired.
using resume_atom = caf::atom_constant<caf::atom("pl_resume")>;
inline constexpr resume_atom resume_v{};
/// To the controller: stop the run with this error.
using abort_atom = caf::atom_constant<caf::atom("pl_abort")>;
inline constexpr abort_atom abort_v{};
/// To the controller: the user cancelled the run.
using cancel_atom = caf::atom_constant<caf::atom("pl_cancel")>;
inline constexpr cancel_atom cancel_v{};
/// The controller's deadline timer fired.
using deadline_atom = caf::atom_constant<caf::atom("pl_dline")>;
inline constexpr deadline_atom deadline_v{};
/// To the controller: every actor is spawned, start watching them.
using start_atom = caf::atom_constant<caf::atom("pl_start")>;
inline constexpr start_atom start_v{};
/// A push source sends its pending events downstream.
using flush_atom = caf::atom_constant<caf::atom("pl_flush")>;
inline constexpr flush_atom flush_v{};
/// A push source's idle timer fired.
using idle_atom = caf::atom_constant<caf::atom("pl_idle")>;
inline constexpr idle_atom idle_v{};

using clock_type = std::chrono::steady_clock;

/// The statistics of one element of a run, updated by its actors and read
/// by `pipeline_handle::stats` from any thread.
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

/// The text of the exception `ep` ("unknown exception" for a non-standard
/// one).
std::string exception_text(std::exception_ptr ep);

} // namespace actorbus::pipeline::internal

namespace actorbus::pipeline::detail {

/// One run, shared by its actors and every copy of its `pipeline_handle`.
struct run_state {
  run_options opts;
  std::deque<internal::counters> stats; // source, stages, sink
  internal::clock_type::time_point started = internal::clock_type::now();

  mutable std::mutex mtx;
  std::condition_variable cv;
  bool done = false;
  caf::error error;
  std::vector<failed_item> dead;
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

  void add_dead_letter(failed_item x) {
    if (opts.on_dead_letter) {
      opts.on_dead_letter(std::move(x));
      return;
    }
    std::lock_guard<std::mutex> guard{mtx};
    if (dead.size() < opts.max_kept_dead_letters)
      dead.push_back(std::move(x));
  }
};

} // namespace actorbus::pipeline::detail

namespace actorbus::pipeline::internal {

using state_ptr = std::shared_ptr<detail::run_state>;

/// Spawns the source pulling from `spec.pull`, sending to `downstream`,
/// which granted `credit` items up front (source.cpp).
caf::actor spawn_source(caf::actor_system& sys, state_ptr st,
                        detail::source_spec spec, caf::actor downstream,
                        std::size_t credit);

/// Spawns the source fed by messages as `spec.push` says (source.cpp).
caf::actor spawn_push_source(caf::actor_system& sys, state_ptr st,
                             detail::source_spec spec, caf::actor downstream,
                             std::size_t credit);

/// The actors of one stage: its coordinator and its workers.
struct stage_actors {
  caf::actor coordinator;
  std::vector<caf::actor> workers;
};

/// Spawns stage number `index` (1-based: statistics slot 0 is the source)
/// with `spec.opts.parallelism` workers, sending to `downstream`, which
/// granted `credit` items up front (stage.cpp).
stage_actors spawn_stage(caf::actor_system& sys, state_ptr st,
                         const detail::stage_spec& spec, std::size_t index,
                         caf::actor downstream, std::size_t credit);

/// Spawns the sink (sink.cpp).
caf::actor spawn_sink(caf::actor_system& sys, state_ptr st,
                      detail::sink_spec spec);

} // namespace actorbus::pipeline::internal
