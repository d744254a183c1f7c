#pragma once

// Wall-clock bounds for the few tests whose point is a real-time deadline
// (a shutdown deadline, a publisher's block timeout, a gather deadline).
// Everything else synchronises on replies, futures or virtual time.
//
// AddressSanitizer and UBSan make code several times slower (2-5x measured,
// more on a loaded machine), so under them the deadlines given to the code
// under test, and the room allowed above them, are scaled by
// `timing_slack()`. The regular build keeps the tight bounds. The compiler
// itself says whether ASan is on, so this needs no build option.
//
// One start-up cost is not a matter of scale: CAF 0.17.6 binds a null
// reference when it starts a function actor spawned without arguments
// (caf/detail/init_fun_factory.hpp). UBSan reports it inside libstdc++'s
// shared_ptr, so matching it against cmake/ubsan.supp needs the binary's
// debug info symbolized, once per process: the first such actor (a test's
// argument-less actor; the bus spawns its couriers with an argument for this
// reason) starts about 0.5 s late, and
// several seconds late on a loaded machine. A deadline a test checks starts
// after that actor is up; waits that only guard against a hang use
// `patience`.

#include <chrono>

namespace actorbus::test {

/// How many times longer a wall-clock bound is in this build: 1 normally,
/// larger under AddressSanitizer.
constexpr int timing_slack() noexcept {
#if defined(__SANITIZE_ADDRESS__)
  return 5;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return 5;
#else
  return 1;
#endif
#else
  return 1;
#endif
}

/// Bounds a wait whose duration is not what the test checks.
inline constexpr std::chrono::seconds patience{30};

/// `d` scaled by `timing_slack()`.
template <class Rep, class Period>
constexpr auto slack(std::chrono::duration<Rep, Period> d) noexcept {
  return d * timing_slack();
}

} // namespace actorbus::test
