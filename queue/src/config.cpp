#include "actorbus/queue/config.hpp"

#include "options.hpp"

#include <caf/sec.hpp>

namespace actorbus::queue {

caf::error queue_config::validate() const {
  auto bad = [](const char* what) {
    return caf::make_error(caf::sec::invalid_argument, what);
  };
  // Redis refuses an expiry of 0, and the finish script sets one.
  if (result_ttl < std::chrono::seconds{1})
    return bad("queue_config.result_ttl: must be at least 1 s");
  if (visibility_timeout < std::chrono::milliseconds{1})
    return bad("queue_config.visibility_timeout: must be at least 1 ms");
  if (sweep_interval < std::chrono::milliseconds{1})
    return bad("queue_config.sweep_interval: must be at least 1 ms");
  if (io_timeout < std::chrono::milliseconds{1})
    return bad("queue_config.io_timeout: must be at least 1 ms");
  if (heartbeat_interval.count() < 0)
    return bad("queue_config.heartbeat_interval: must not be negative");
  if (handler_restart_period.count() < 0)
    return bad("queue_config.handler_restart_period: must not be negative");
  if (auto err = reconnect_backoff.validate())
    return internal::prefixed(err, "queue_config.reconnect_");
  if (auto err = handler_restart_backoff.validate())
    return internal::prefixed(err, "queue_config.handler_restart_");
  return caf::none;
}

} // namespace actorbus::queue
