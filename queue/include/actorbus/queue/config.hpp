#pragma once

// Configuration of the Redis task queue, shared by producers and workers.
//
// Plain values: copy freely. Producers and workers that should share a queue
// need the same `url` and `name_space`.

#include "actorbus/queue/fwd.hpp"

#include <chrono>
#include <cstddef>
#include <string>

namespace actorbus::queue {

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
  std::chrono::milliseconds visibility_timeout{30'000};

  /// How often workers move due delayed tasks and reclaim stale ones.
  std::chrono::milliseconds sweep_interval{1'000};

  /// How often a worker renews the lease of its in-flight tasks; must be
  /// well below `visibility_timeout` (0: a third of it).
  std::chrono::milliseconds heartbeat_interval{0};

  /// How long results, statuses and idempotency markers are kept (at
  /// least 1 s: workers and clients refuse less at start).
  std::chrono::seconds result_ttl{24 * 3600};

  /// Entries a read takes from each priority stream, and the tasks in
  /// flight per worker process above which it reads no more (1 gives the
  /// unbatched mode). One read covers the three streams, so a worker may
  /// hold up to 3 x batch_size tasks when all three have work.
  std::size_t batch_size = 256;

  /// Handler actors per worker process.
  std::size_t concurrency = 2;

  /// Connect and command timeout of a Redis connection.
  std::chrono::milliseconds io_timeout{2'000};

  /// Upper bound of the exponential backoff between reconnect attempts.
  std::chrono::milliseconds reconnect_backoff_max{1'000};

  /// Restart intensity of the supervisor of a worker's handler actors: a
  /// restart beyond `handler_max_restarts` within `handler_restart_period`
  /// makes the worker give up (it stops taking tasks, hands those it holds
  /// back to the queue as retries, and reports `worker_stats::gave_up`).
  std::size_t handler_max_restarts = 10;
  std::chrono::milliseconds handler_restart_period{10'000};

  /// Pause before restarting a handler actor, doubling with each
  /// consecutive restart up to `handler_restart_backoff_max`.
  std::chrono::milliseconds handler_restart_backoff{10};
  std::chrono::milliseconds handler_restart_backoff_max{1'000};
};

} // namespace actorbus::queue
