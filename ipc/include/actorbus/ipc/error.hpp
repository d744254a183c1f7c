#pragma once

// Error codes of the ipc module. Every failing ipc call returns a
// `caf::error` in category "ipc" whose context names what went wrong. The
// category is registered with `runtime::register_error_category`, so
// `describe(err)` and `sys.render(err)` print "ipc.peer_dead: <context>".
// Bad configuration is `caf::sec::invalid_argument` naming the field.

#include "actorbus/runtime/error.hpp"

#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <cstdint>
#include <string>

namespace actorbus::ipc {

/// Why an ipc operation failed.
enum class errc : uint8_t {
  /// The wait ran out before the operation could complete.
  timeout = 1,
  /// The process on the other side died (killed, crashed) without closing.
  peer_dead,
  /// The other side closed the channel; nothing more will arrive.
  peer_closed,
  /// A frame is larger than the channel's maximum; nothing was sent.
  frame_too_large,
  /// Bytes in shared memory or on the wire violate the framing rules.
  corrupt_frame,
  /// A live process already owns an object with this name.
  already_exists,
  /// No object with this name exists.
  not_found,
  /// The object belongs to another user or has a mode other than 0600.
  permission_denied,
  /// The object was made by an incompatible version or has the wrong shape.
  incompatible,
  /// Another live peer is already attached to the channel.
  busy,
  /// A name or argument is unusable.
  invalid_argument,
  /// The operating system refused (see the context for errno's text).
  system_error,
  /// A process pool's worker died while running the task, as often as
  /// `process_pool_options::max_task_attempts` allows; not tried again.
  task_crashed,
};

/// The category atom of ipc errors.
inline constexpr caf::atom_value error_category = caf::atom("ipc");

/// Returns the name of `x`, e.g. "peer_dead".
const char* to_string(errc x) noexcept;

/// Wraps `x` into a `caf::error` without context.
caf::error make_error(errc x);

/// Wraps `x` into a `caf::error` whose context explains it.
caf::error make_error(errc x, std::string what);

/// Renders any actorbus or CAF error as words: "ipc.<code>: <context>" for
/// ipc errors (the runtime's `describe`).
using runtime::describe;

} // namespace actorbus::ipc
