#pragma once

// Error codes of the actors module, in CAF error category "actors".
//
//   caf::error err = make_error(errc::intensity_exceeded, "db: disk full");
//   runtime::describe(err); // "actors.intensity_exceeded: db: disk full"
//   sys.render(err);        // the same words in every runtime_config
//   if (err == errc::intensity_exceeded) ...
//
// The category registers itself with `runtime::register_error_category`
// when the module is linked, so no call is needed to make these errors
// print as words. Bad configuration is not an `errc`: it is
// `caf::sec::invalid_argument` whose context names component and field
// ("supervisor.children: duplicate id \"db\"").
//
// An exception thrown by user code inside an actor of this module (a
// supervised child that calls `report_exceptions`, a start function of a
// supervised child) becomes `caf::sec::runtime_error` whose context carries
// the exception's `what()`; it is also logged.

#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <cstdint>
#include <exception>
#include <string>

namespace caf {
class scheduled_actor;
} // namespace caf

namespace actorbus::actors {

/// Why an operation of the actors module failed.
enum class errc : std::uint8_t {
  /// A supervisor restarted children more often than `max_restarts` within
  /// `period` and gave up; the context names the last failure.
  intensity_exceeded = 1,
  /// `start_child_v` was sent to a supervisor whose children are static.
  not_dynamic,
  /// The queue is closed (and, for a get, drained).
  closed,
  /// A wait ran out of time.
  timeout,
  /// `task_done` was called more often than items were put.
  no_unfinished_task,
  /// A bounded queue was full and its overload policy refused the item.
  full,
};

/// The category atom of actors errors.
inline constexpr caf::atom_value error_category = caf::atom("actors");

/// Returns the name of `x`, e.g. "intensity_exceeded".
const char* to_string(errc x) noexcept;

/// Wraps `x` into a `caf::error` without context.
caf::error make_error(errc x);

/// Wraps `x` into a `caf::error` whose context explains it.
caf::error make_error(errc x, std::string context);

/// The error for an exception that escaped user code:
/// `caf::sec::runtime_error` whose context is `what()` ("unknown exception"
/// for anything not derived from `std::exception`), after `prefix` when
/// one is given ("start of db: disk full").
caf::error error_from_exception(const std::exception_ptr& ex,
                                const std::string& prefix = {});

/// Makes an exception that escapes one of `self`'s handlers end `self` with
/// `error_from_exception`: the sender of the message being handled gets
/// that error as its reply, monitors (a supervisor) see it as the exit
/// reason, and the text is logged. CAF's default handler only prints the
/// text and ends the actor with a bare `caf::sec::runtime_error`. Call it
/// first thing in the actor's behaviour factory.
void report_exceptions(caf::scheduled_actor* self);

} // namespace actorbus::actors
