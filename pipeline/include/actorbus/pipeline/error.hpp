#pragma once

// Error codes of the pipeline module. A run that stops early, an item that
// fails and a source that cannot start report a `caf::error` in category
// "pipeline" whose context names what went wrong;
// `actorbus::runtime::describe(err)` (and `sys.render(err)`) prints it as
// "pipeline.<code>: <context>".

#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <cstdint>
#include <string>

namespace actorbus::pipeline {

/// Why a pipeline run, or one of its items, failed.
enum class errc : std::uint8_t {
  /// `cancel()` was called.
  cancelled = 1,
  /// The run's deadline passed before the end of the stream.
  deadline_exceeded,
  /// A stage function failed (exception or error) on an item.
  item_failed,
  /// The source failed (could not open its file, threw).
  source_failed,
  /// The sink threw.
  sink_failed,
  /// An actor of the pipeline exited abnormally.
  actor_failed,
};

/// The category atom of pipeline errors.
inline constexpr caf::atom_value error_category = caf::atom("pipeline");

/// Returns the name of `x`, e.g. "item_failed".
const char* to_string(errc x) noexcept;

/// Wraps `x` into a `caf::error` without context.
caf::error make_error(errc x);

/// Wraps `x` into a `caf::error` whose context explains it.
caf::error make_error(errc x, std::string context);

} // namespace actorbus::pipeline
