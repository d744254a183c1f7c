#pragma once

// Error codes of the queue module, in CAF error category "queue". The
// category is registered with `runtime::register_error_category`, so
// `runtime::describe(err)` and `sys.render(err)` print
// "queue.unknown_task: no handler for 'resize'". Bad configuration is
// `caf::sec::invalid_argument` naming the field
// ("queue_config.result_ttl: must be at least 1 s"); a wait that runs out is
// `caf::sec::request_timeout`, as for any CAF request.

#include "actorbus/runtime/error.hpp"

#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <cstdint>
#include <string>

namespace actorbus::queue {

/// Why a queue operation, or a task, failed.
enum class errc : std::uint8_t {
  /// Redis could not be reached, or did not answer in time (the context
  /// names the URL or the wait).
  unreachable = 1,
  /// Redis refused a command (the context carries its reply).
  redis_error,
  /// No such entry (e.g. a dead task to requeue).
  not_found,
  /// A stream entry lacks the fields of a task (id, name).
  malformed_entry,
  /// A payload does not decode to the types a handler takes.
  malformed_payload,
  /// No handler is registered for the task's name.
  unknown_task,
  /// A handler threw; the context carries the exception's `what()`.
  handler_failed,
  /// The worker is gone or stopping.
  stopped,
};

/// The category atom of queue errors.
inline constexpr caf::atom_value error_category = caf::atom("queue");

/// Returns the name of `x`, e.g. "unknown_task".
const char* to_string(errc x) noexcept;

/// Wraps `x` into a `caf::error` without context.
caf::error make_error(errc x);

/// Wraps `x` into a `caf::error` whose context explains it.
caf::error make_error(errc x, std::string context);

/// Renders any actorbus or CAF error as words (the runtime's `describe`).
using runtime::describe;

} // namespace actorbus::queue
