#pragma once

// One shape for every actorbus error.
//
// Each module (runtime, actors, bus, pipeline, ipc, queue, ...) declares its
// error codes as `enum class errc : std::uint8_t` in its own namespace, in a
// CAF error category named after the module (`caf::atom("bus")`), with
// `to_string(errc)`, `make_error(errc)` and `make_error(errc, context)`. It
// registers the category once, at static initialisation, with
// `register_error_category`. Then:
//  - `describe(err)` renders any error as "<module>.<code>: <context>"
//    ("ipc.peer_dead: exited with status 3"), CAF's own errors as
//    "caf.<code>: <context>";
//  - every `runtime_config` registers the same renderer with CAF, so
//    `sys.render(err)` prints the same words.
// Bad configuration is `caf::sec::invalid_argument` whose context names the
// component and field ("worker_pool.workers: must be at least 1").
//
// Thread-safe: registration and rendering may happen from any thread.

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <cstdint>
#include <string>

namespace actorbus::runtime {

/// Returns the name of one code of a category, e.g. "peer_dead".
using error_code_namer = const char* (*)(std::uint8_t code) noexcept;

/// Makes `describe` and every `runtime_config` render errors of `category`
/// as "<module>.<code name>: <context>". Returns true (so that a module can
/// register from the initialiser of a static variable). Registering the
/// same category again replaces the earlier entry.
bool register_error_category(caf::atom_value category, const char* module,
                             error_code_namer namer);

/// Renders `err` as words: "<module>.<code>: <context>" for registered
/// categories, "caf.<code>: <context>" for CAF's system errors, "none" for
/// no error, CAF's generic text otherwise. A context that is one string is
/// shown as is; any other context is shown as CAF renders it.
std::string describe(const caf::error& err);

/// Adds a renderer for every category registered so far to `cfg`, so that
/// `sys.render(err)` equals `describe(err)`. `runtime_config` calls it in
/// its constructor; call it yourself only on a plain
/// `caf::actor_system_config`.
void add_error_renderers(caf::actor_system_config& cfg);

/// Errors of the runtime module, in category "runtime".
enum class errc : std::uint8_t {
  /// A blocking call ran out of time.
  timeout = 1,
  /// The runtime is shutting down and accepts no new work.
  shutting_down,
  /// A value read from configuration (code, file or command line) is
  /// invalid; the context names the key.
  invalid_config,
  /// A child process could not be started or ended abnormally; the context
  /// says how (errno text, exit status or signal).
  process_failed,
};

/// The category atom of runtime errors.
inline constexpr caf::atom_value error_category = caf::atom("runtime");

/// Returns the name of `x`, e.g. "timeout".
const char* to_string(errc x) noexcept;

/// Wraps `x` into a `caf::error` without context.
caf::error make_error(errc x);

/// Wraps `x` into a `caf::error` whose context explains it.
caf::error make_error(errc x, std::string context);

} // namespace actorbus::runtime
