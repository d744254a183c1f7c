#pragma once

// Configuration of the Redis task queue, shared by producers and workers.
//
// Plain values: copy freely. Producers and workers that should share a queue
// need the same `url` and `name_space`. Durations are `caf::timespan`;
// Redis keeps them in milliseconds (expiries in whole seconds).

#include "actorbus/queue/fwd.hpp"
#include "actorbus/runtime/backoff.hpp"

#include <caf/error.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstddef>
#include <string>

namespace actorbus::queue {

/// Where the queue is and how producers and workers use it.
struct queue_config {
  /// Where Redis is: `redis://host:port` or `unix:///path/to/socket`. Empty:
  /// a private `redis-server` is started on a Unix socket in a temporary
  /// folder (no TCP port) and stopped when its last user in this process is
  /// gone.
  std::string url;

  /// Prefix of every key this queue uses, so several queues share a Redis.
  std::string name_space = "actorbus";

  /// A task delivered to a worker that neither acknowledged it nor renewed
  /// its lease for this long is reclaimed by another worker.
  caf::timespan visibility_timeout = std::chrono::seconds(30);

  /// How often workers move due delayed tasks and reclaim stale ones.
  caf::timespan sweep_interval = std::chrono::seconds(1);

  /// How often a worker renews the lease of its in-flight tasks; must be
  /// well below `visibility_timeout` (0: a third of it).
  caf::timespan heartbeat_interval = caf::timespan{0};

  /// How long results, statuses and idempotency markers are kept (at
  /// least 1 s: workers and clients refuse less at start).
  caf::timespan result_ttl = std::chrono::hours(24);

  /// Entries a read takes from each priority stream, and the tasks in
  /// flight per worker process above which it reads no more (1 gives the
  /// unbatched mode). One read covers the three streams, so a worker may
  /// hold up to 3 x batch_size tasks when all three have work.
  std::size_t batch_size = 256;

  /// Handler actors per worker process.
  std::size_t concurrency = 2;

  /// Connect and command timeout of a Redis connection.
  caf::timespan io_timeout = std::chrono::seconds(2);

  /// Pause between attempts to reconnect to Redis.
  runtime::backoff reconnect_backoff{.min = std::chrono::milliseconds(10),
                                     .max = std::chrono::seconds(1)};

  /// Restart intensity of the supervisor of a worker's handler actors: a
  /// restart beyond `handler_max_restarts` within `handler_restart_period`
  /// makes the worker give up (it stops taking tasks, hands those it holds
  /// back to the queue as retries, and reports `worker_stats::gave_up`).
  std::size_t handler_max_restarts = 10;
  caf::timespan handler_restart_period = std::chrono::seconds(10);

  /// Pause before restarting a handler actor; a handler actor that ran for
  /// `reset_after` starts the count of its restarts again.
  runtime::backoff handler_restart_backoff{.min = std::chrono::milliseconds(10),
                                           .max = std::chrono::seconds(1),
                                           .reset_after =
                                               std::chrono::seconds(10)};

  /// `caf::sec::invalid_argument` naming the field
  /// ("queue_config.result_ttl: must be at least 1 s") when a field is out
  /// of range; no error when valid. Clients and workers check it at start.
  [[nodiscard]] caf::error validate() const;
};

} // namespace actorbus::queue
