#include "actorbus/runtime/backoff.hpp"

#include <caf/sec.hpp>

#include <algorithm>
#include <cmath>
#include <random>

namespace actorbus::runtime {

caf::error backoff::validate() const {
  auto bad = [](const char* why) {
    return caf::make_error(caf::sec::invalid_argument, why);
  };
  if (min.count() < 0 || max.count() < 0)
    return bad("backoff.min/max: must not be negative");
  if (max < min)
    return bad("backoff.max: must not be less than backoff.min");
  if (!(multiplier >= 1.0) || !std::isfinite(multiplier))
    return bad("backoff.multiplier: must be a finite number >= 1");
  if (!(jitter >= 0.0 && jitter <= 1.0))
    return bad("backoff.jitter: must lie in [0, 1]");
  if (reset_after.count() < 0)
    return bad("backoff.reset_after: must not be negative");
  return caf::error{};
}

caf::timespan backoff::nominal_delay(std::size_t n) const {
  auto cap = static_cast<double>(std::max(max, min).count());
  auto d = static_cast<double>(min.count());
  for (std::size_t i = 0; i < n && d < cap; ++i)
    d *= multiplier;
  return caf::timespan{static_cast<caf::timespan::rep>(std::min(d, cap))};
}

caf::timespan backoff::delay(std::size_t n, double u) const {
  auto cap = static_cast<double>(std::max(max, min).count());
  auto base = static_cast<double>(nominal_delay(n).count());
  u = std::clamp(u, 0.0, 1.0);
  auto lo = base * (1.0 - jitter);
  auto hi = base * (1.0 + jitter);
  return caf::timespan{
      static_cast<caf::timespan::rep>(std::min(lo + (hi - lo) * u, cap))};
}

caf::timespan backoff::random_delay(std::size_t n) const {
  if (jitter == 0.0)
    return nominal_delay(n);
  thread_local std::mt19937_64 gen{std::random_device{}()};
  std::uniform_real_distribution<double> dist{0.0, 1.0};
  return delay(n, dist(gen));
}

} // namespace actorbus::runtime
