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
//   auto sup = spawn_supervisor(rt, std::move(cfg)); // rt: runtime::runtime
//
// Children start in the order of `children`. When a child exits, its
// restart type decides whether it comes back: permanent always, transient
// only after an abnormal exit (any reason other than `normal` and
// `user_shutdown`), temporary never. The strategy decides who restarts with
// it: one_for_one the child alone; one_for_all every child; rest_for_one the
// child and those started after it; simple_one_for_one (dynamic children of
// the single spec, added with `start_child_v`) the child alone. Children
// that restart together are first stopped in reverse start order, then
// started again in start order.
//
// Intensity: a restart beyond `max_restarts` within `period` makes the
// supervisor stop all its children (reverse start order) and exit with
// `errc::intensity_exceeded` (category "actors"), whose context names the
// child and the failure that broke the limit ("child \"db\": caf.runtime_error:
// disk full"): the escalation its own parent (a monitor or link) sees. A
// start function that fails or throws counts as a restart; an exception it
// throws becomes `caf::sec::runtime_error` with the exception's `what()`.
// A child that calls `report_exceptions(self)` (actors/error.hpp) exits with
// such an error when a handler throws, so the text reaches its requester,
// the supervisor and the escalation.
//
// Backoff: the n-th consecutive restart of a child waits
// `cfg.backoff.random_delay(n)` (runtime/backoff.hpp: min(max, min *
// multiplier^n), spread by +/- jitter); the count resets once the child has
// run for `reset_after`. The default restarts at once (min = max = 0). All
// delays use the actor clock (virtual time under the deterministic
// scheduler). Nothing blocks: the supervisor answers queries while a child
// waits or keeps failing its start.
//
// Shutdown: an exit message to the supervisor (or `stop_v`) stops the
// children in reverse start order; each gets `user_shutdown`, then is killed
// when it has not exited after its spec's `shutdown_timeout`. A supervisor
// that ends any other way (killed) kills the children still running: no
// child outlives its supervisor. Spawned through a `runtime::runtime`, the
// supervisor is tracked by it, so the runtime's shutdown stops the tree.
//
// Queries (requests to the supervisor):
//   count_children_v         -> child_counts
//   which_children_v         -> std::vector<std::string> "id:state" in start
//                               order, state running|restarting|stopped
//   caf::get_atom, id        -> caf::actor (invalid while not running)
//   start_child_v            -> caf::actor: a new dynamic child
//                               (simple_one_for_one only; errc::not_dynamic
//                               otherwise, the start's error when it fails)
//   stop_v                   -> caf::ok_atom, once every child stopped; the
//                               supervisor then exits normally

#include "actorbus/actors/error.hpp"
#include "actorbus/runtime/backoff.hpp"
#include "actorbus/runtime/fwd.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>
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

/// How a supervisor starts, restarts and gives up on its children.
struct supervisor_config {
  /// Who restarts with a failed child.
  restart_strategy strategy = restart_strategy::one_for_one;
  /// Intensity: more than `max_restarts` restarts within `period` escalate.
  std::size_t max_restarts = 3;
  /// The window in which restarts count against `max_restarts`.
  caf::timespan period = std::chrono::seconds(5);
  /// Pause before a child's n-th consecutive restart; the default restarts
  /// at once. `reset_after`: a child that ran this long since its last
  /// start is stable, its next restart waits `min` again (zero: never).
  runtime::backoff backoff{.min = caf::timespan{0}, .max = caf::timespan{0}};
  /// Started in this order (exactly one for simple_one_for_one, which
  /// starts no child until asked).
  std::vector<child_spec> children;
};

/// Reply to `count_children_v`: how many children a supervisor has and how
/// they fare. Temporary children that exited and transient children that
/// finished are no longer counted.
struct child_counts {
  /// Children the supervisor is responsible for.
  std::uint64_t specs = 0;
  /// Children running now.
  std::uint64_t active = 0;
  /// Children waiting for their restart (backoff) or being restarted.
  std::uint64_t restarting = 0;
  /// Restarts since the supervisor started, failed starts included.
  std::uint64_t total_restarts = 0;

  friend bool operator==(const child_counts&, const child_counts&) = default;
};

/// Lets CAF serialize and print `child_counts`.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, child_counts& x) {
  return f(caf::meta::type_name("child_counts"), x.specs, x.active,
           x.restarting, x.total_restarts);
}

using count_children_atom = caf::atom_constant<caf::atom("abCountCh")>;
inline constexpr count_children_atom count_children_v{};
using which_children_atom = caf::atom_constant<caf::atom("abWhichCh")>;
inline constexpr which_children_atom which_children_v{};
using start_child_atom = caf::atom_constant<caf::atom("abStartCh")>;
inline constexpr start_child_atom start_child_v{};
using stop_atom = caf::atom_constant<caf::atom("abStop")>;
inline constexpr stop_atom stop_v{};

/// Registers the supervisor's reply types (`child_counts`) with `cfg`.
/// Needed only to send them to another process; local requests work
/// without it.
void add_supervisor_types(caf::actor_system_config& cfg);

/// Checks `cfg`, then spawns the supervisor on `sys`, which starts its
/// children. Nothing tracks it: stop it (exit message, `stop_v`) before the
/// actor system ends. Errors: `caf::sec::invalid_argument` naming the field
/// (`supervisor.children: duplicate id "db"`, `supervisor.backoff.jitter:
/// must lie in [0, 1]`, `supervisor.children: simple_one_for_one needs
/// exactly one child spec`, a child spec without a start function).
caf::expected<caf::actor> spawn_supervisor(caf::actor_system& sys,
                                           supervisor_config cfg);

/// Same on `rt`'s actor system, tracked by `rt`: its shutdown stops the
/// supervisor (which stops its children). Also fails with
/// `caf::sec::runtime_error` once the runtime is shutting down.
caf::expected<caf::actor> spawn_supervisor(runtime::runtime& rt,
                                           supervisor_config cfg);

} // namespace actorbus::actors
