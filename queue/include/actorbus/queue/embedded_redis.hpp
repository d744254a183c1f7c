#pragma once

// A private redis-server child process on a Unix socket.
//
// Started in a fresh temporary folder with no TCP port and no persistence
// (unless `persistent`), owned by this object and stopped (SIGTERM, then
// SIGKILL after a grace period) by `stop()` or the destructor, which also
// removes the folder. Not thread-safe.

#include "actorbus/queue/fwd.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <memory>
#include <string>

namespace actorbus::queue {

class embedded_redis {
public:
  /// Starts `redis-server` (found on PATH). With `persistent`, writes an
  /// append-only file synced on every write, so `restart()` keeps data.
  /// Fails with `caf::sec::runtime_error` when the server does not come up
  /// within a few seconds.
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
    return pid_;
  }

  /// Kills the server with SIGKILL (a crash, not a shutdown).
  void crash();

  /// Stops the server gracefully.
  void stop();

  /// Starts the server again on the same socket and folder.
  caf::error restart();

private:
  embedded_redis() = default;
  caf::error launch();

  std::string dir_;
  std::string socket_;
  std::string url_;
  bool persistent_ = false;
  int pid_ = 0;
};

} // namespace actorbus::queue
