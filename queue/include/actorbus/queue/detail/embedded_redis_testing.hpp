#pragma once

// Test hooks of `embedded_redis`: not part of the API, included by tests only.

#include "actorbus/queue/embedded_redis.hpp"

namespace actorbus::queue::detail {

struct embedded_redis_testing {
  /// Kills the server with SIGKILL (a crash, not a shutdown) and reaps it;
  /// `restart()` starts it again.
  static void crash(embedded_redis& x) {
    x.crash();
  }
};

} // namespace actorbus::queue::detail
