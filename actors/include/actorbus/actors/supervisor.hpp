#pragma once

// Supervisors in the manner of Erlang/OTP, on CAF monitors.
//
//   supervisor_config cfg;
//   cfg.strategy = restart_strategy::one_for_one;
//   cfg.max_restarts = 3;                     // at most 3 restarts ...
//   cfg.period = std::chrono::seconds(5);     // ... within 5 s
//   cfg.backoff = {.min = 10ms, .max = 1s, .jitter = 0.2, .reset_after = 10s};
//   cfg.children.push_back({.id = "db", .start = [](caf::actor_system& sys) {
//     return caf::expected<caf::actor>{sys.spawn(db_actor)};
//   }});
//   auto sup = spawn_supervisor(sys, std::move(cfg));
//
// Children start in the order of `children`. When a child exits, its
// restart type decides whether it comes back: permanent always, transient
// only after an abnormal exit (any reason other than `normal` and
// `user_shutdown`), temporary never. The strategy decides who restarts with
// it: one_for_one the child alone; one_for_all every child; rest_for_one the
// child and those started after it; simple_one_for_one (dynamic children of
// the single spec, added with `start_child_atom`) the child alone. Children
// that restart together are first stopped in reverse start order, then
// started again in start order.
//
// Intensity: a restart beyond `max_restarts` within `period` makes the
// supervisor stop all its children (reverse start order) and exit with
// `supervisor_errc::intensity_exceeded`: the escalation its own parent (a
// monitor or link) sees. A start function that fails counts as a restart.
// Backoff: the n-th consecutive restart of a child waits
// min(max, min * multiplier^n), spread by +/- jitter; the count resets once
// the child has run for `reset_after`. All delays use the actor clock
// (virtual time under the deterministic scheduler). Nothing blocks: the
// supervisor answers queries while a child waits or keeps failing its start.
//
// Shutdown: an exit message to the supervisor (or `stop_atom`) stops the
// children in reverse start order; each gets `user_shutdown`, then is killed
// when it has not exited after its spec's `shutdown_timeout`.
//
// Queries (requests to the supervisor):
//   count_children_atom      -> std::vector<uint64_t>{specs, active,
//                               restarting, total_restarts}
//   which_children_atom      -> std::vector<std::string> "id:state" in start
//                               order, state running|restarting|stopped
//   caf::get_atom, id        -> caf::actor (invalid while not running)
//   start_child_atom         -> caf::actor: a new dynamic child
//                               (simple_one_for_one only)
//   stop_atom                -> caf::ok_atom, once every child stopped; the
//                               supervisor then exits normally

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace actorbus::actors {

/// Who restarts with a failed child.
enum class restart_strategy {
  one_for_one,
  one_for_all,
  rest_for_one,
  simple_one_for_one,
};

/// Whether a child that exited comes back.
enum class restart_type {
  permanent,
  transient,
  temporary,
};

/// Errors of supervisors (category `supervisor`).
enum class supervisor_errc : uint8_t {
  none = 0,
  /// Too many restarts within the period: the supervisor gave up.
  intensity_exceeded,
  /// `start_child_atom` sent to a supervisor that is not simple_one_for_one.
  not_dynamic,
  /// The configuration is invalid.
  invalid_config,
};

/// Renders a supervisor error code.
std::string to_string(supervisor_errc x);

/// Makes a `caf::error` of the supervisor category.
caf::error make_error(supervisor_errc x, std::string what = {});

/// How a child is started and treated.
struct child_spec {
  /// Unique among the supervisor's children; dynamic children get
  /// "<id>-<n>".
  std::string id;
  /// Starts the child; an error counts as a failed (re)start.
  std::function<caf::expected<caf::actor>(caf::actor_system&)> start;
  restart_type restart = restart_type::permanent;
  /// Grace period between `user_shutdown` and kill when stopping.
  caf::timespan shutdown_timeout = std::chrono::seconds(5);
};

/// Pause before restarting a child.
struct restart_backoff {
  caf::timespan min = caf::timespan{0};
  caf::timespan max = caf::timespan{0};
  double multiplier = 2.0;
  /// Fraction in [0, 1]: the pause is drawn from [d(1-j), d(1+j)], <= max.
  double jitter = 0.0;
  /// A child that ran this long since its last start is stable: its next
  /// restart waits `min` again. Zero: never reset.
  caf::timespan reset_after = caf::timespan{0};

  /// Pause before consecutive restart `n` (0 = first) for a draw `u` in
  /// [0, 1].
  [[nodiscard]] caf::timespan delay(std::size_t n, double u) const;
};

struct supervisor_config {
  restart_strategy strategy = restart_strategy::one_for_one;
  /// Intensity: more than `max_restarts` restarts within `period` escalate.
  std::size_t max_restarts = 3;
  caf::timespan period = std::chrono::seconds(5);
  restart_backoff backoff;
  /// Started in this order (exactly one for simple_one_for_one, which
  /// starts no child until asked).
  std::vector<child_spec> children;
};

using count_children_atom = caf::atom_constant<caf::atom("abCountCh")>;
using which_children_atom = caf::atom_constant<caf::atom("abWhichCh")>;
using start_child_atom = caf::atom_constant<caf::atom("abStartCh")>;
using stop_atom = caf::atom_constant<caf::atom("abStop")>;

/// Checks `cfg`, then spawns the supervisor, which starts its children.
/// Errors: `supervisor_errc::invalid_config` (no start function, duplicate
/// ids, not exactly one spec for simple_one_for_one, bad backoff).
caf::expected<caf::actor> spawn_supervisor(caf::actor_system& sys,
                                           supervisor_config cfg);

} // namespace actorbus::actors
