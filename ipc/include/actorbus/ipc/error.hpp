#pragma once

// Error codes of the ipc module. Every failing ipc call returns a
// `caf::error` in category "ipc" whose context names what went wrong, so
// `describe(err)` reads like a sentence.

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
};

/// The category atom of ipc errors.
inline constexpr caf::atom_value error_category = caf::atom("ipc");

/// Returns the name of `x`, e.g. "peer_dead".
const char* to_string(errc x) noexcept;

/// Wraps `x` into a `caf::error` without context.
caf::error make_error(errc x);

/// Wraps `x` into a `caf::error` whose context explains it.
caf::error make_error(errc x, std::string what);

/// Renders any error as "ipc.<code>: <context>" (or CAF's rendering for
/// errors of other categories).
std::string describe(const caf::error& err);

} // namespace actorbus::ipc
