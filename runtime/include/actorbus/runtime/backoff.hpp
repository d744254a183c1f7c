#pragma once

// The one backoff type of actorbus: how long to pause before the n-th repeat
// of something that failed (a restart, a retry, a reconnect, a task's next
// attempt). Every component that waits between attempts takes a `backoff`.
//
//   runtime::backoff b{.min = 10ms, .max = 1s, .jitter = 0.2};
//   caf::timespan pause = b.random_delay(n); // n = 0 before the first repeat
//
// The pause before repeat n is `min(max, min * multiplier^n)`, spread
// uniformly by +/- `jitter` (0.2 means 80%..120%) and never above `max`.
// Whoever counts the repeats starts again at 0 after a run that lasted
// `reset_after` (zero: never). A plain value, thread-safe to share.

#include <caf/error.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstddef>

namespace actorbus::runtime {

/// Exponential, capped, jittered pause between repeated attempts.
struct backoff {
  /// Pause before the first repeat.
  caf::timespan min = std::chrono::milliseconds(100);
  /// Upper bound of any pause, jitter included.
  caf::timespan max = std::chrono::seconds(10);
  /// Growth from one pause to the next (finite, >= 1).
  double multiplier = 2.0;
  /// Random spread in [0, 1]: a pause is drawn from [d(1-j), d(1+j)].
  double jitter = 0.0;
  /// A run that lasted this long resets the count of repeats; zero: never.
  caf::timespan reset_after = caf::timespan{0};

  /// `caf::sec::invalid_argument` naming the field ("backoff.jitter: must
  /// lie in [0, 1]") when a field is out of range, no error when valid.
  [[nodiscard]] caf::error validate() const;

  /// Pause before repeat `n` (0 = first) without jitter.
  [[nodiscard]] caf::timespan nominal_delay(std::size_t n) const;

  /// Pause before repeat `n` for a draw `u` in [0, 1]: the jitter interval
  /// is walked linearly from its low end (u = 0) to its high end (u = 1).
  [[nodiscard]] caf::timespan delay(std::size_t n, double u) const;

  /// Pause before repeat `n` with a draw from a thread-local generator.
  [[nodiscard]] caf::timespan random_delay(std::size_t n) const;

  /// True when a run of length `ran` resets the count of repeats.
  [[nodiscard]] bool resets_after(caf::timespan ran) const noexcept {
    return reset_after.count() > 0 && ran >= reset_after;
  }

  friend bool operator==(const backoff&, const backoff&) = default;
};

} // namespace actorbus::runtime
