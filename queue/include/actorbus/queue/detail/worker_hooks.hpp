#pragma once

// Test hooks of `queue::worker`; not part of the public API. The fault
// tests stop a worker at these points to check what survives a crash there.

#include "actorbus/queue/fwd.hpp"

#include <functional>

namespace actorbus::queue::detail {

/// Where a worker may be stopped by a fault-injection hook.
enum class fault_point {
  /// Tasks read, not yet handed to handlers.
  before_handle,
  /// A handler finished; its acknowledgement is sent but not confirmed.
  after_effect,
  /// Acknowledgement confirmed by Redis.
  after_ack,
};

/// Calls `hook` at each `fault_point` of `w`, one call at a time (from the
/// reading thread, or from the handler actor when it acknowledges and reads
/// on its own thread: one handler taking one task at a time). Set it
/// before `w.start()`.
void on_fault_point(worker& w, std::function<void(fault_point)> hook);

} // namespace actorbus::queue::detail
