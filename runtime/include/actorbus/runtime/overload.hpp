#pragma once

// The one overload vocabulary of actorbus: what a bounded queue does with a
// new item when it is full. Bus subscriptions, worker and handler pools,
// `async_queue` and pipeline buffers all take an `overload_policy` and give
// each value the same meaning; a component that cannot honour a value
// refuses it as bad configuration (`caf::sec::invalid_argument`).

#include <cstdint>
#include <string_view>

namespace actorbus::runtime {

/// What a full bounded queue does with a new item.
enum class overload_policy : std::uint8_t {
  /// The producer waits for room, at most the component's block timeout;
  /// then the item is refused with a timeout error.
  block,
  /// The new item is refused at once with an error the producer sees.
  fail,
  /// The new item is discarded and reported (counted, dead-lettered);
  /// the producer's call succeeds.
  drop_newest,
  /// The oldest queued item is discarded and reported to make room for the
  /// new one; the producer's call succeeds.
  drop_oldest,
};

/// Returns the name of `x`, e.g. "drop_oldest".
constexpr std::string_view to_string(overload_policy x) noexcept {
  switch (x) {
  case overload_policy::block:
    return "block";
  case overload_policy::fail:
    return "fail";
  case overload_policy::drop_newest:
    return "drop_newest";
  case overload_policy::drop_oldest:
    return "drop_oldest";
  }
  return "unknown";
}

} // namespace actorbus::runtime
