#pragma once

// Child processes that do not outlive the program that started them.
//
//   auto child = child_process::spawn("/usr/bin/redis-server", {"--port",
//   "0"}); if (!child)
//     return child.error();        // runtime.process_failed: exec of ...
//   ...
//   auto status = child->terminate(5s); // SIGTERM, SIGKILL after 5 s
//
// Every child is forked by a watcher thread of its own, which sleeps on the
// child's pidfd until it exits, reaps it (no zombie is left) and then ends.
// The child is started with PR_SET_PDEATHSIG: it gets `SIGKILL` (by default)
// when its watcher thread ends, which happens only once the child was reaped
// or when this whole process dies, however it dies (SIGKILL included). The
// thread that calls `spawn` does not matter: a child started from a
// short-lived thread does not die with it.
//
// The child starts with default signal dispositions and an empty signal
// mask. It inherits this process's environment (plus `process_options::env`)
// and its standard streams unless redirected. Descriptors that actorbus
// opens are close-on-exec; with `inherit_fds = false` the program gets only
// its standard streams, whatever else this process has open.
//
// Signals are sent through the pidfd, so a signal never reaches another
// process that reused the pid after the child was reaped.
//
// Ownership: `child_process` is move-only and owns its child. Destroying it
// (or assigning another child to it) kills a child that still runs with
// SIGKILL and reaps it, waiting at most a few seconds. Thread-safety: the
// member functions of one object may be called from several threads at once,
// except assignment and destruction.

#include "actorbus/runtime/fwd.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace actorbus::runtime {

/// How a child process ended: the status it exited with, or the signal that
/// killed it.
struct exit_status {
  /// The exit status when `signal` is 0.
  int code = 0;
  /// The signal that ended the process; 0 when it exited by itself.
  int signal = 0;

  /// True when the process exited with status 0.
  [[nodiscard]] bool success() const noexcept {
    return signal == 0 && code == 0;
  }

  friend bool operator==(const exit_status&, const exit_status&) = default;
};

/// Renders `x` as "exited with status 3" or "killed by signal 9 (Killed)".
std::string to_string(const exit_status& x);

/// How to start a child process.
struct process_options {
  /// "NAME=value" entries added to (or replacing in) this process's
  /// environment.
  std::vector<std::string> env;

  /// The signal the child gets when this process dies (PR_SET_PDEATHSIG).
  /// 0 lets the child outlive this process: only for a child whose job is to
  /// clean up after it, and that ends by itself.
  int parent_death_signal = SIGKILL;

  /// Descriptors that become the child's standard input, output and error;
  /// -1 keeps this process's.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;

  /// Whether an executed program inherits this process's descriptors that
  /// are not close-on-exec (as POSIX does). With false it gets only its
  /// standard streams.
  bool inherit_fds = true;
};

/// One child process, owned by this object; see the file comment.
class child_process {
public:
  /// An object that owns no process.
  child_process() noexcept;

  /// Executes `path` with `args` (argv[0] is `path`; without a '/' in it,
  /// `path` is looked up on PATH) and returns once the program runs.
  /// Errors: `errc::process_failed` when fork, pidfd_open or exec failed;
  /// the context names the program and errno's text ("exec of '/no/such':
  /// No such file or directory"); `errc::timeout` when exec did not finish
  /// within 10 s; `caf::sec::invalid_argument` for an empty `path`.
  [[nodiscard]] static caf::expected<child_process>
  spawn(std::string path, std::vector<std::string> args = {},
        process_options options = {});

  /// Forks this process and runs `body` in the child; its result is the
  /// exit status (70 if it throws). Only the forking thread exists in the
  /// child: `body` must not wait on locks or actors of this process.
  /// `inherit_fds` does not apply (nothing is executed). Errors:
  /// `errc::process_failed` when fork or pidfd_open failed;
  /// `caf::sec::invalid_argument` for an empty `body`.
  [[nodiscard]] static caf::expected<child_process>
  fork(std::function<int()> body, process_options options = {});

  child_process(child_process&&) noexcept;
  child_process& operator=(child_process&&) noexcept;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// Kills the child with SIGKILL if it still runs and reaps it.
  ~child_process();

  /// True when this object owns a process (running or ended).
  explicit operator bool() const noexcept {
    return impl_ != nullptr;
  }

  /// The child's process id; 0 when this object owns no process.
  [[nodiscard]] pid_t pid() const noexcept;

  /// How the child ended, or nothing while it runs.
  [[nodiscard]] std::optional<exit_status> status() const;

  /// Waits up to `timeout` for the child to end. Errors: `errc::timeout`
  /// when it still runs, `errc::process_failed` when this object owns no
  /// process.
  caf::expected<exit_status> wait(caf::timespan timeout);

  /// Sends `sig` to the child; does nothing once it ended. Errors:
  /// `errc::process_failed` (no process, or the kernel refused).
  caf::error signal(int sig);

  /// Sends SIGTERM, waits up to `grace` for the child to end, then sends
  /// SIGKILL and waits for that (a few seconds at most). Returns how the
  /// child ended; returns at once if it already had. Errors: `errc::timeout`
  /// when even SIGKILL did not end it in time, `errc::process_failed` when
  /// this object owns no process.
  caf::expected<exit_status> terminate(caf::timespan grace);

  /// Calls `f` with the exit status once the child ends: on the watcher
  /// thread, or at once on this thread if it already ended. Replaces an
  /// earlier callback; an empty `f` removes it. `f` must not block.
  void on_exit(std::function<void(const exit_status&)> f);

private:
  struct impl;

  explicit child_process(std::shared_ptr<impl> ptr) noexcept;
  void reset() noexcept;

  std::shared_ptr<impl> impl_;
};

} // namespace actorbus::runtime
