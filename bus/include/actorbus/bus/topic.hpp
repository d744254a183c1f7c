#pragma once

// Topic names and topic patterns.
//
// A topic is a non-empty dot-separated list of non-empty segments
// ("orders.created"); a segment may not contain '*', '#' or whitespace. A
// pattern has the same shape, and a segment of a pattern may also be `*`
// (exactly one segment) or `#` (any number of segments, zero included):
// "orders.*" matches "orders.created" but not "orders" or "orders.eu.created";
// "orders.#" matches "orders", "orders.created" and "orders.eu.created".
// Topics starting with '$' are reserved for the bus ("$dead-letters") and
// are matched only by patterns that name them explicitly ("$dead-letters",
// "$dead-letters.#"), never by a leading `*` or `#`.
// All functions are pure and thread-safe.

#include <string_view>

namespace actorbus::bus {

/// Whether `topic` is a valid topic name (see above).
bool is_valid_topic(std::string_view topic) noexcept;

/// Whether `pattern` is a valid pattern (see above).
bool is_valid_pattern(std::string_view pattern) noexcept;

/// Whether `pattern` matches `topic`. Returns false when either is invalid.
/// The bus does not call this per publish (it uses an index); it is the
/// reference the index is tested against.
bool matches(std::string_view pattern, std::string_view topic) noexcept;

} // namespace actorbus::bus
