#pragma once

// Waiting for SIGINT / SIGTERM in programs built on actorbus.
//
// A signal_waiter installs handlers for SIGINT and SIGTERM that only record
// the signal and wake waiters (async-signal-safe: a write to a pipe). The
// previous handlers are restored when it is destroyed. At most one
// signal_waiter may exist at a time.

#include "actorbus/runtime/fwd.hpp"

#include <chrono>
#include <optional>

namespace actorbus::runtime {

/// Waits for SIGINT or SIGTERM with a timeout or until cancelled, so a
/// program can shut down gracefully.
class signal_waiter {
public:
  signal_waiter();
  ~signal_waiter();

  signal_waiter(const signal_waiter&) = delete;
  signal_waiter& operator=(const signal_waiter&) = delete;

  /// Blocks until SIGINT or SIGTERM arrives, `cancel()` is called, or the
  /// timeout passes. Returns the signal number, or nothing on timeout or
  /// cancel.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);

  /// Wakes every `wait_for` with no signal (e.g. when the program is done
  /// for another reason). Thread-safe.
  void cancel();
};

} // namespace actorbus::runtime
