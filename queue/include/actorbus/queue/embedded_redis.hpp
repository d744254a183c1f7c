#pragma once

// A private redis-server child process on a Unix socket.
//
// Started in a fresh temporary folder with no TCP port and no persistence
// (unless `persistent`), owned by this object and stopped (SIGTERM, then
// SIGKILL after a grace period) by `stop()` or the destructor, which also
// removes the folder. Not thread-safe.
//
// Nothing outlives this program, however it ends: the server is a
// `runtime::child_process` and gets SIGKILL when this program dies (SIGKILL,
// an unhandled SIGTERM, a crash). The folder is removed then too: a small
// shell process, started with the server's folder and not tied to this
// program's death, waits until this program is gone, removes the folder and
// exits; the destructor stops it when it is not needed.

#include "actorbus/queue/fwd.hpp"
#include "actorbus/runtime/process.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <memory>
#include <string>

namespace actorbus::queue {

namespace detail {
struct embedded_redis_testing;
} // namespace detail

/// A redis-server started for this program; see the file comment.
class embedded_redis {
public:
  /// Starts `redis-server` (found on PATH). With `persistent`, writes an
  /// append-only file synced on every write, so `restart()` keeps data.
  /// Fails with `caf::sec::runtime_error` when the server cannot be started
  /// or does not come up within a few seconds; the context says why.
  static caf::expected<std::unique_ptr<embedded_redis>>
  start(bool persistent = false);

  /// The process-wide instance used by queues configured without a URL;
  /// started on first use, stopped when the last holder lets go.
  static caf::expected<std::shared_ptr<embedded_redis>> shared();

  ~embedded_redis();

  embedded_redis(const embedded_redis&) = delete;
  embedded_redis& operator=(const embedded_redis&) = delete;

  /// `unix:///<folder>/redis.sock`.
  const std::string& url() const noexcept {
    return url_;
  }

  /// The server's process id (0 when stopped).
  int pid() const noexcept {
    return server_.pid();
  }

  /// Stops the server gracefully.
  void stop();

  /// Starts the server again on the same socket and folder.
  caf::error restart();

private:
  friend struct detail::embedded_redis_testing;

  embedded_redis() = default;
  caf::error start_cleaner();
  caf::error launch();
  void crash();

  std::string dir_;
  std::string socket_;
  std::string url_;
  bool persistent_ = false;
  runtime::child_process server_;
  // Removes dir_ once this program is gone: it reads its standard input
  // until EOF, i.e. until cleaner_fd_, the pipe's only writer, is closed.
  runtime::child_process cleaner_;
  int cleaner_fd_ = -1;
};

} // namespace actorbus::queue
