#pragma once

// Errors of the bus.
//
// Bus errors are `caf::error`s of the category `bus`, registered with
// `runtime::register_error_category` when the program starts: without any
// set-up, `runtime::describe(err)` and `sys.render(err)` of every
// `runtime_config` print them as "bus.<code>: <context>", e.g.
// "bus.queue_full: sensor.*". A plain `caf::actor_system_config` renders
// them the same after `runtime::add_error_renderers(cfg)`. Compare with
// `err == errc::queue_full`.

#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <cstdint>
#include <string>

namespace actorbus::bus {

/// Errors of the bus, in CAF's error category `bus`.
enum class errc : std::uint8_t {
  /// The topic name is empty or malformed; the context is the topic.
  invalid_topic = 1,
  /// The subscription pattern is empty or malformed; the context is the
  /// pattern.
  invalid_pattern,
  /// A subscription with `overload_policy::fail` had a full queue; the
  /// context is its pattern.
  queue_full,
  /// A subscription with `overload_policy::block` stayed full until its
  /// `block_timeout`; the context is its pattern.
  publish_timeout,
  /// The bus is closed (being destroyed, or its runtime shut down).
  closed,
  /// An argument other than a topic or pattern is invalid; the context
  /// names it.
  invalid_argument,
};

/// The category atom of bus errors.
inline constexpr caf::atom_value error_category = caf::atom("bus");

/// Returns the name of `x`, e.g. "queue_full".
const char* to_string(errc x) noexcept;

/// Wraps `x` into a `caf::error` without context (also used implicitly:
/// `err == errc::queue_full` works).
caf::error make_error(errc x);

/// Wraps `x` into a `caf::error` whose context names what failed.
caf::error make_error(errc x, std::string context);

} // namespace actorbus::bus
