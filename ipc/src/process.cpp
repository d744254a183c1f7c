#include "actorbus/ipc/process.hpp"

#include "actorbus/ipc/error.hpp"
#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/process.hpp"

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <climits>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <unistd.h>

namespace actorbus::ipc {

namespace {

using exited_atom = caf::atom_constant<caf::atom("abProcExit")>;
constexpr exited_atom exited_v{};
using kill_atom = caf::atom_constant<caf::atom("abProcKill")>;
constexpr kill_atom kill_v{};

// The ipc error for a failure of runtime::child_process, with its context.
caf::error from_runtime(const caf::error& err) {
  std::string context;
  if (err.context().match_elements<std::string>())
    context = err.context().get_as<std::string>(0);
  if (err == runtime::errc::timeout)
    return make_error(errc::timeout, std::move(context));
  if (err == caf::sec::invalid_argument)
    return make_error(errc::invalid_argument, std::move(context));
  return make_error(errc::system_error, std::move(context));
}

struct process_state {
  runtime::child_process proc;
  caf::timespan kill_timeout{0};
  std::optional<caf::error> stop_reason;

  // Destroying `proc` kills the process if it still runs and reaps it.

  static inline const char* name = "actorbus.process";
};

caf::behavior process_actor(caf::stateful_actor<process_state>* self,
                            std::shared_ptr<runtime::child_process> proc,
                            caf::timespan kill_timeout) {
  auto& st = self->state;
  st.proc = std::move(*proc);
  st.kill_timeout = kill_timeout;
  st.proc.on_exit([weak = caf::actor_cast<caf::weak_actor_ptr>(self)](
                      const runtime::exit_status& x) {
    if (auto strong = weak.lock())
      caf::anon_send(caf::actor_cast<caf::actor>(strong), exited_v,
                     int32_t{x.code}, int32_t{x.signal});
  });
  self->set_exit_handler([self](caf::exit_msg& em) {
    auto& st = self->state;
    if (st.stop_reason)
      return;
    st.stop_reason = std::move(em.reason);
    st.proc.signal(SIGTERM);
    self->delayed_send(self, st.kill_timeout, kill_v);
  });
  return {
      [self](exited_atom, int32_t code, int32_t signal) {
        auto& st = self->state;
        runtime::exit_status status{code, signal};
        if (st.stop_reason)
          self->quit(*st.stop_reason);
        else if (status.success())
          self->quit(caf::exit_reason::normal);
        else
          self->quit(make_error(errc::peer_dead,
                                "process " + std::to_string(st.proc.pid()) +
                                    " " + runtime::to_string(status)));
      },
      [self](kill_atom) { self->state.proc.signal(SIGKILL); },
      [self](caf::get_atom) {
        return static_cast<int32_t>(self->state.proc.pid());
      },
  };
}

} // namespace

process_spec exec_process(std::string path, std::vector<std::string> args) {
  process_spec result;
  result.path = std::move(path);
  result.args = std::move(args);
  return result;
}

process_spec worker_role_process(std::string role,
                                 std::vector<std::string> args) {
  char buf[PATH_MAX];
  auto n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  auto result = exec_process(n > 0 ? std::string(buf, static_cast<size_t>(n))
                                   : "/proc/self/exe",
                             std::move(args));
  result.env.push_back(std::string{worker_role_env} + "=" + role);
  return result;
}

process_spec forked_process(std::function<int()> body) {
  process_spec result;
  result.body = std::move(body);
  return result;
}

std::optional<std::string> current_worker_role() {
  if (const char* role = std::getenv(worker_role_env); role && *role)
    return std::string{role};
  return std::nullopt;
}

caf::expected<started_process> launch_process(caf::actor_system& sys,
                                              process_spec spec) {
  if (spec.path.empty() && !spec.body)
    return make_error(errc::invalid_argument,
                      "a process needs a program path or a body");
  runtime::process_options opts;
  opts.env = std::move(spec.env);
  auto proc =
      spec.path.empty()
          ? runtime::child_process::fork(std::move(spec.body), std::move(opts))
          : runtime::child_process::spawn(
                std::move(spec.path), std::move(spec.args), std::move(opts));
  if (!proc)
    return from_runtime(proc.error());
  auto pid = proc->pid();
  // A shared_ptr carries the move-only handle into the spawn arguments.
  auto handle = std::make_shared<runtime::child_process>(std::move(*proc));
  return started_process{
      sys.spawn(process_actor, std::move(handle), spec.kill_timeout), pid};
}

caf::expected<caf::actor> spawn_process(caf::actor_system& sys,
                                        process_spec spec) {
  auto res = launch_process(sys, std::move(spec));
  if (!res)
    return std::move(res.error());
  return std::move(res->actor);
}

actors::child_spec process_child(std::string id, process_spec spec,
                                 actors::restart_type restart) {
  actors::child_spec result;
  result.id = std::move(id);
  result.restart = restart;
  result.shutdown_timeout = spec.kill_timeout + std::chrono::seconds(1);
  result.start = [spec = std::move(spec)](caf::actor_system& sys) {
    return spawn_process(sys, spec);
  };
  return result;
}

} // namespace actorbus::ipc
