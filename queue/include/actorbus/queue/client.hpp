#pragma once

// The producer side of the task queue: enqueue, status, wait, cancel, and
// the dead tasks (the dead-letter stream).
//
// A client owns one Redis connection and is not thread-safe: use one per
// thread. Every call has a bounded wait (`queue_config::io_timeout`, or the
// timeout given to `wait`); a lost connection is re-established on the next
// call. Errors come back as `caf::error` (see error.hpp), never as
// exceptions.

#include "actorbus/queue/codec.hpp"
#include "actorbus/queue/config.hpp"
#include "actorbus/queue/error.hpp"
#include "actorbus/queue/fwd.hpp"
#include "actorbus/runtime/backoff.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace actorbus::queue {

/// Priority levels; workers always take waiting `high` tasks first.
enum class priority : uint8_t { high = 0, normal = 1, low = 2 };

/// How to run one task.
struct task_options {
  /// Run no earlier than this long from now.
  caf::timespan delay = caf::timespan{0};
  /// Run no earlier than this time (wins over `delay` when set).
  std::optional<std::chrono::system_clock::time_point> run_at;
  /// Attempts before the task becomes a dead task (at least 1). A worker
  /// that dies holding the task also uses up an attempt.
  uint32_t max_attempts = 3;
  /// Pause before the second attempt (`min`), growing by `multiplier` for
  /// each further one up to `max`, spread by `jitter`. Kept in Redis in
  /// milliseconds; `reset_after` does not apply to tasks.
  runtime::backoff backoff{.min = std::chrono::milliseconds(100),
                           .max = std::chrono::seconds(60)};
  /// An attempt running longer fails (0: no limit), counted from the
  /// handler's start, not from the task's wait for a busy handler actor.
  /// The handler is not interrupted; its late result is discarded.
  caf::timespan timeout = caf::timespan{0};
  /// When set, the task's effects (see `task_context::add_effect`) and its
  /// result are applied at most once for this key, however often the task
  /// is delivered.
  std::string idempotency_key;
  priority level = priority::normal;
};

enum class task_status {
  /// No such task (never enqueued, or its status expired).
  unknown,
  /// Waiting for its run time or for a retry.
  scheduled,
  /// In the stream, waiting for or held by a worker.
  queued,
  succeeded,
  /// Failed its last attempt; a dead task (see `client::dead_tasks`).
  dead,
  cancelled,
};

std::string_view to_string(task_status x);

/// What Redis knows about a task.
struct task_info {
  std::string id;
  task_status status = task_status::unknown;
  std::string name;
  /// The attempt running or next to run (1-based).
  uint32_t attempt = 0;
  /// The handler's result (`succeeded`).
  std::string result;
  /// The last error (retries, `dead`).
  std::string error;
};

/// A task that will not run again without a `requeue`: an entry of the
/// dead-letter stream.
struct dead_task {
  /// Id of the entry in the dead-letter stream (for `requeue`).
  std::string entry;
  std::string task_id;
  std::string name;
  std::string reason;
  uint32_t attempts = 0;
  std::string payload;
  /// The task's options as enqueued (its delay aside): `requeue` enqueues
  /// it with them again, its priority and idempotency key included.
  task_options options;
};

/// Enqueues tasks and follows them. Movable, not copyable; one per thread.
class client {
public:
  /// Connects to the queue's Redis (starting the embedded one when
  /// `cfg.url` is empty).
  static caf::expected<client> connect(queue_config cfg = {});

  client(client&&) noexcept;
  client& operator=(client&&) noexcept;
  ~client();

  /// The URL of the Redis this client talks to (the embedded one's when no
  /// URL was configured): give it to workers in other processes.
  const std::string& url() const;

  /// Enqueues task `name` with an already encoded payload; returns its id.
  /// Fails with `caf::sec::invalid_argument` for an empty name or invalid
  /// options (`max_attempts` 0, a bad backoff), naming the field.
  caf::expected<std::string> enqueue_payload(std::string_view name,
                                             std::string payload,
                                             const task_options& opts = {});

  /// Enqueues task `name` with typed arguments (see codec.hpp).
  template <class... Ts>
  caf::expected<std::string>
  enqueue(std::string_view name, const task_options& opts, const Ts&... xs) {
    return enqueue_payload(name, encode(xs...), opts);
  }

  /// Enqueues many tasks of one name and options (a `run_at` becomes one
  /// delay for the whole batch) in one pipelined round trip (all or nothing
  /// per task). Returns their ids in order.
  caf::expected<std::vector<std::string>>
  enqueue_many(std::string_view name, const std::vector<std::string>& payloads,
               const task_options& opts = {});

  /// The task's current status.
  caf::expected<task_info> status(std::string_view id);

  /// Blocks until the task succeeded, went dead or was cancelled, or until
  /// `timeout` (then `caf::sec::request_timeout`). Returns its final info.
  caf::expected<task_info> wait(std::string_view id, caf::timespan timeout);

  /// Enqueues a task and waits for its end, one round trip shorter than
  /// `enqueue_payload` plus `wait`. On `caf::sec::request_timeout` the task
  /// still exists; its id is in the error's message.
  caf::expected<task_info> run(std::string_view name, std::string payload,
                               const task_options& opts, caf::timespan timeout);

  /// Cancels a task that no worker has started. Returns true when cancelled,
  /// false when it already runs or finished.
  caf::expected<bool> cancel(std::string_view id);

  /// Up to `count` dead tasks, oldest first.
  caf::expected<std::vector<dead_task>> dead_tasks(std::size_t count = 100);

  /// Moves a dead task back into the queue with fresh attempts and its
  /// options (priority, max attempts, backoff, timeout, idempotency key).
  /// Returns the new task id; `errc::not_found` when there is no such
  /// entry.
  caf::expected<std::string> requeue(std::string_view dead_entry);

  /// Number of tasks waiting in the streams and in the delayed set.
  caf::expected<std::size_t> backlog();

  /// Runs a raw Redis command (administration, tests); returns the reply
  /// rendered as text (arrays as lines).
  caf::expected<std::string> command(const std::vector<std::string>& args);

private:
  struct impl;
  explicit client(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace actorbus::queue
