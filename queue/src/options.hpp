#pragma once

// Internal: task options as Redis keeps them, in the "o" field of a task:
// "<max_attempts> <backoff min ms> <backoff max ms> <timeout ms>
// <multiplier> <jitter>". Entries of older producers carry only the first
// four numbers; older workers read only those.

#include "actorbus/queue/client.hpp"

#include <caf/error.hpp>

#include <string>

namespace actorbus::queue::internal {

/// The "o" field of a task enqueued with `opts`.
std::string encode_options(const task_options& opts);

/// Reads an "o" field into the matching fields of `out` (max_attempts,
/// backoff, timeout); false, with `out` unchanged, when it is malformed.
bool decode_options(const std::string& text, task_options& out);

/// `caf::sec::invalid_argument` naming the field of `opts` that is out of
/// range ("task_options.max_attempts: must be at least 1").
caf::error check_options(const task_options& opts);

/// `err` (an error whose context is a string) with `prefix` put before its
/// context: "backoff.jitter: ..." becomes "task_options.backoff.jitter: ...".
caf::error prefixed(const caf::error& err, const std::string& prefix);

/// Whole seconds of `x` (rounded down): Redis expiries.
inline long long to_seconds(caf::timespan x) {
  return std::chrono::duration_cast<std::chrono::seconds>(x).count();
}

/// Whole milliseconds of `x` (rounded down).
inline long long to_ms(caf::timespan x) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(x).count();
}

} // namespace actorbus::queue::internal
