#pragma once

// Operating-system processes as actors, so that `actors::supervisor` restarts
// them with its backoff and intensity like any other child.
//
//   supervisor_config cfg;
//   cfg.backoff = {.min = 50ms, .max = 2s};
//   cfg.children.push_back(process_child(
//     "resizer", exec_process("/usr/bin/convert-worker", {"--fast"})));
//   cfg.children.push_back(process_child("indexer",
//                                        worker_role_process("indexer")));
//   auto sup = actors::spawn_supervisor(sys, std::move(cfg));
//
// A process actor owns exactly one process, a `runtime::child_process`
// (runtime/process.hpp: reaped through its pidfd, PR_SET_PDEATHSIG, so it
// dies with this program however that ends). `spawn_process` starts it (and
// fails if fork or exec fails), the actor exits when the process does, with
// `exit_reason::normal` for status 0 and an `errc::peer_dead` error naming the
// status or signal otherwise; that exit is what the supervisor sees. When the
// actor is told to exit (the supervisor's `user_shutdown`, any exit message),
// it sends SIGTERM, then SIGKILL after `kill_timeout` (on the actor clock),
// and exits once the process ended. If the actor is killed or destroyed
// first, the process gets SIGKILL and is reaped before the actor's state goes
// away.
//
// Worker roles: `worker_role_process("indexer")` re-executes this program
// (/proc/self/exe) with the environment variable ACTORBUS_WORKER_ROLE set;
// its `main` asks `current_worker_role()` and runs the worker instead of the
// normal program.
//
// Queries: `caf::get_atom` -> int32_t, the pid.

#include "actorbus/actors/supervisor.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace actorbus::ipc {

/// What a process actor starts: a program (`path` non-empty) or a forked copy
/// of this process running `body`.
struct process_spec {
  /// Program to execute; without '/', it is looked up on PATH.
  std::string path;
  /// Arguments after argv[0] (which is `path`).
  std::vector<std::string> args;
  /// "NAME=value" entries added to (or replacing in) this process's
  /// environment.
  std::vector<std::string> env;
  /// Run in a forked child when `path` is empty; its result is the exit
  /// status. Only the forking thread exists in the child: `body` must not
  /// wait on locks or actors of this process.
  std::function<int()> body;
  /// Grace period between SIGTERM and SIGKILL when the actor is stopped.
  caf::timespan kill_timeout{std::chrono::seconds(5)};
};

/// A spec that executes `path` with `args`.
process_spec exec_process(std::string path, std::vector<std::string> args = {});

/// A spec that re-executes this program in the worker role `role`.
process_spec worker_role_process(std::string role,
                                 std::vector<std::string> args = {});

/// A spec that forks this process and runs `body` in the child.
process_spec forked_process(std::function<int()> body);

/// The name of the environment variable that carries the worker role.
inline constexpr const char* worker_role_env = "ACTORBUS_WORKER_ROLE";

/// The role this process was started in by `worker_role_process`, if any.
std::optional<std::string> current_worker_role();

/// A started process and the actor that owns it.
struct started_process {
  caf::actor actor;
  pid_t pid = 0;
};

/// Starts the process described by `spec` and spawns the actor that owns it.
/// Errors: `errc::invalid_argument` (neither path nor body),
/// `errc::system_error` (fork, pidfd or exec failed; the context has
/// errno's text).
caf::expected<started_process> launch_process(caf::actor_system& sys,
                                              process_spec spec);

/// `launch_process` for callers that need only the actor.
caf::expected<caf::actor> spawn_process(caf::actor_system& sys,
                                        process_spec spec);

/// A supervisor child whose start is `spawn_process(sys, spec)`; its
/// shutdown timeout leaves room for the SIGTERM grace period.
actors::child_spec
process_child(std::string id, process_spec spec,
              actors::restart_type restart = actors::restart_type::permanent);

} // namespace actorbus::ipc
